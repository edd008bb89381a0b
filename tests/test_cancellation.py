"""A task cancelled in the step its event is set ends: `wait_event` (exporter/clock.py) and the
waits built on it, in the render loop, the scheduler and the token bucket.

On Python 3.11, `asyncio.wait_for(event.wait(), timeout)` loses that cancellation (CPython issue
86296): the task runs on, and a shutdown that awaits it hangs. Every test here sets the event and
cancels the task in one step, then asserts the task ended cancelled at that very instant.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from exporter.clock import loop_time, wait_event
from exporter.render_loop import MetricsCache
from exporter.scheduler import wait_replanned
from exporter.traffic import TokenBucket

pytestmark = pytest.mark.virtual_time

WAITING = 1.0  # when the test sets the event and cancels: the task waits by then


async def cancel_as_set(waiter: Coroutine[Any, Any, Any], set_event: Callable[[], None]) -> str:
    """Start `waiter`, and at WAITING set its event and cancel it in one step; wait up to a
    virtual hour for it to end. 'cancelled', 'returned', or 'still running'."""
    task = asyncio.create_task(waiter)
    await asyncio.sleep(WAITING)
    assert not task.done()
    set_event()
    task.cancel()
    await asyncio.wait([task], timeout=3600)
    if not task.done():
        task.cancel()  # a second cancel reaches it (it no longer waits on the event)
        await asyncio.gather(task, return_exceptions=True)
        return "still running"
    return "cancelled" if task.cancelled() else "returned"


async def test_wait_event_says_whether_the_event_was_set_and_waits_exactly() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 5) is False
    assert loop_time() == 5.0
    asyncio.get_running_loop().call_later(2, event.set)
    assert await wait_event(event, 5) is True
    assert loop_time() == 7.0
    assert await wait_event(event, 5) is True  # already set: at once
    assert await wait_event(event, None) is True
    assert loop_time() == 7.0
    event.clear()
    asyncio.get_running_loop().call_later(100, event.set)
    assert await wait_event(event, None) is True  # no limit
    assert loop_time() == 107.0


async def test_wait_event_lets_a_cancel_through_in_the_step_the_event_is_set() -> None:
    event = asyncio.Event()
    assert await cancel_as_set(wait_event(event, 60), event.set) == "cancelled"
    assert loop_time() == WAITING


async def test_wait_for_on_this_interpreter() -> None:
    """Why the helper exists: the form it replaces, on the running Python. Before 3.12 (whose
    wait_for is built on asyncio.timeout) it returns as if never cancelled."""

    async def old_form(event: asyncio.Event) -> None:
        await asyncio.wait_for(event.wait(), 60)

    event = asyncio.Event()
    outcome = await cancel_as_set(old_form(event), event.set)
    assert outcome == ("returned" if sys.version_info < (3, 12) else "cancelled")


class Replan:
    """A scheduler's settings-changed event: set, then replaced by a fresh one."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


async def render_loop() -> tuple[Coroutine[Any, Any, None], Callable[[], None]]:
    """The render loop waiting for a poll result (or its hourly refresh)."""
    cache = MetricsCache(tuple, stale_after=60, refresh_every=3600)
    return cache.run(), cache.mark_changed


async def next_poll() -> tuple[Coroutine[Any, Any, None], Callable[[], None]]:
    """A target waiting for its next poll, an hour away, when a reload changes the settings."""
    replan, due = Replan(), loop_time() + 3600
    return wait_replanned(lambda: due - loop_time(), lambda: replan.event), replan


async def token() -> tuple[Coroutine[Any, Any, None], Callable[[], None]]:
    """A request waiting for a token at 1 every 100 s, when a reload changes the rate."""
    bucket = TokenBucket(0.01)
    await bucket.acquire()  # the first token, at once
    return bucket.acquire(), lambda: bucket.set_rate(0.02)


@pytest.mark.parametrize("waiting", [render_loop, next_poll, token])
async def test_a_wait_of_the_exporter_ends_when_cancelled_as_its_event_is_set(waiting) -> None:
    waiter, set_event = await waiting()
    assert await cancel_as_set(waiter, set_event) == "cancelled"
    assert loop_time() == WAITING


def test_no_wait_for_of_an_event_is_left_in_the_package() -> None:
    """`wait_for(event.wait(), t)` loses cancels on Python 3.11: wait_event() replaces it (its
    docstring names the old form in backquotes, which is no call)."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "exporter"
    found = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"(?<!`asyncio\.)wait_for\(\s*[\w.()]*\.wait\(\)", line)
    ]
    assert found == []
