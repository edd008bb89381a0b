"""The exporter's one clock for intervals, backoff, spacing and staleness: the event loop's.

In production the loop's clock is `time.monotonic()`, so nothing changes; tests run the exporter
on an event loop with virtual time (`tests/virtualtime.py`), where waits take no real time and
intervals are exact. Wall-clock timestamps (`time.time()`) are for display and stay real.
"""

from __future__ import annotations

import asyncio
import time


def loop_time() -> float:
    """The running event loop's time; `time.monotonic()` outside a loop (the same clock)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set or `timeout` seconds pass (None: no limit); True if it is set.

    Use it instead of `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11 that form swallows
    a cancellation arriving in the step the event is set (CPython issue 86296), so a cancelled task
    runs on and whoever awaits it (a shutdown) can hang. `asyncio.timeout` waits in the calling
    task itself, and a cancellation reaches it whatever else happens in that step.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
