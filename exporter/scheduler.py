"""The poll scheduler: one task per target, a shared concurrency limit, backoff on 429.

Each poll replaces the target's frozen TargetState and tells the metrics cache that something
changed. Log lines are written on state changes only (up -> down with the reason, down -> up),
so a target that stays down does not flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from .config import PollingSettings, Target
from .metrics import TargetState
from .parsing import REASONS, PollError, Worker

log = logging.getLogger(__name__)

JITTER = 0.05  # each interval is stretched or shrunk by up to 5% so targets drift apart
MAX_BACKOFF_INTERVALS = 10
MAX_RETRY_AFTER = 3600.0

FetchWorkers = Callable[[Target], Awaitable[list[Worker]]]


class Scheduler:
    """Polls every target at start-up and then every interval, at most `concurrency` at once."""

    def __init__(
        self,
        fetch: FetchWorkers,
        polling: PollingSettings,
        on_change: Callable[[], None],
    ) -> None:
        self._fetch = fetch
        self._polling = polling
        self._on_change = on_change
        self._semaphore = asyncio.Semaphore(polling.concurrency)
        self._states: dict[str, TargetState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def states(self) -> tuple[TargetState, ...]:
        return tuple(self._states.values())

    @property
    def ready(self) -> bool:
        """True once every target has been polled at least once (success or failure)."""
        return all(state.polled for state in self._states.values())

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Start polling new targets at once, stop and forget removed ones, relabel changed ones."""
        wanted = {target.key: target for target in targets}
        for key in [key for key in self._tasks if key not in wanted]:
            self._tasks.pop(key).cancel()
            del self._states[key]
        for key, target in wanted.items():
            state = self._states.get(key)
            if state is None:
                self._states[key] = TargetState(target)
                self._tasks[key] = asyncio.create_task(self._run(key), name=f"poll {key}")
            elif state.target != target:
                self._states[key] = replace(state, target=target)
        self._on_change()

    async def stop(self) -> None:
        """Cancel every poll in flight and wait for the tasks to end."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, key: str) -> None:
        while True:
            async with self._semaphore:
                await self.poll(key)
            await asyncio.sleep(self._next_delay(self._states[key]))

    async def poll(self, key: str) -> None:
        """Poll one target once and record the outcome."""
        state = self._states[key]
        started = time.monotonic()
        try:
            workers = await self._fetch(state.target)
        except PollError as exc:
            outcome = self._failed(state, exc, time.monotonic() - started)
        else:
            outcome = self._succeeded(state, workers, time.monotonic() - started)
        current = self._states.get(key)
        if current is not None:  # set_targets may have relabelled it while we waited
            self._states[key] = replace(outcome, target=current.target)
            self._on_change()

    def _succeeded(self, state: TargetState, workers: list[Worker], duration: float) -> TargetState:
        now = time.time()
        if not state.up:
            level = logging.INFO if state.polled else logging.DEBUG
            fields = {"kind": state.target.kind, "id": state.target.id, "workers": len(workers)}
            if state.polled and state.last_success is not None:
                fields["down_for"] = f"{now - state.last_success:.0f}s"
            log.log(level, "target up", extra={"fields": fields})
        return replace(
            state,
            polled=True,
            up=True,
            workers=tuple(workers),
            last_success=now,
            last_attempt=now,
            last_duration=duration,
            last_error=None,
            last_error_message="",
            rate_limited_streak=0,
            retry_after=None,
        )

    def _failed(self, state: TargetState, error: PollError, duration: float) -> TargetState:
        if not state.polled or state.up or state.last_error != error.reason:
            fields = {
                "kind": state.target.kind,
                "id": state.target.id,
                "reason": error.reason,
                "error": error.message,
            }
            log.warning("target down", extra={"fields": fields})
        errors = list(state.errors)
        errors[REASONS.index(error.reason)] += 1
        streak = state.rate_limited_streak + 1 if error.reason == "rate_limited" else 0
        return replace(
            state,
            polled=True,
            up=False,
            last_attempt=time.time(),
            last_duration=duration,
            last_error=error.reason,
            last_error_message=error.message,
            errors=tuple(errors),
            rate_limited_streak=streak,
            retry_after=error.retry_after,
        )

    def _next_delay(self, state: TargetState) -> float:
        """The interval with jitter; after 429s, exponential backoff and Retry-After."""
        interval = self._polling.interval
        if state.rate_limited_streak:
            delay = min(interval * 2**state.rate_limited_streak, MAX_BACKOFF_INTERVALS * interval)
            if state.retry_after is not None:
                delay = max(delay, min(state.retry_after, MAX_RETRY_AFTER))
            return delay
        return interval * random.uniform(1 - JITTER, 1 + JITTER)
