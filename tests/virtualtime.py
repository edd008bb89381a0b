"""An event loop with virtual time, for interval, backoff, staleness and spacing tests.

The loop's clock (`loop.time()`, which the exporter reads through `exporter.clock.loop_time`)
starts at 0 and moves only when the loop has nothing to do: no callback ready, no socket
readable, no job in a worker thread. It then jumps straight to the next timer. Waits take no real
time and happen at exact instants, so a test can say "read at 0, 1, 2 and 3 s", not "3 to 4 times".

Everything the test talks to must live in this loop (the fake API, the in-process exporter, the
client): a peer in another process could answer after the jump. Worker-thread jobs (renders,
DNS lookups, bcrypt) are waited for in real time and take no virtual time.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from typing import Any

IDLE_POLL = 0.05  # real seconds to wait for a worker thread before looking again


class _Selector(selectors.DefaultSelector):
    """Asks the kernel without waiting; when nothing is ready, advances the loop's clock."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0 or self.loop is None:
            return ready
        if self.loop.threads_busy:
            return super().select(IDLE_POLL if timeout is None else min(timeout, IDLE_POLL))
        if timeout is None:  # no timer at all: only outside input can wake the loop
            return super().select(None)
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0
        self._jobs = 0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """To the next timer exactly (not `now + seconds`, which rounding may leave a hair short
        of it, so that a 1 s wait would take 0.9999999999999 s)."""
        target = self._now + max(seconds, 0.0)
        scheduled = getattr(self, "_scheduled", None)
        if scheduled:
            target = max(target, min(handle.when() for handle in scheduled[:1]))
        # A nanosecond clock, like time.monotonic(), that always moves: a wait shorter than a
        # nanosecond (a token bucket 1e-16 short of a token) takes one.
        self._now = max(round(target, 9), round(self._now + 1e-9, 9))

    @property
    def threads_busy(self) -> bool:
        return self._jobs > 0

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        future = super().run_in_executor(executor, func, *args)
        self._jobs += 1
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, _: object) -> None:
        self._jobs -= 1
