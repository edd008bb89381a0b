"""The poll scheduler: one task per target, a shared concurrency limit, backoff on 429.

Each poll replaces the target's frozen TargetState and tells the metrics cache that something
changed. Log lines are written on state changes only (up -> down with the reason, a new reason
while down, down -> up), so a target that stays down does not flood the log. The summary of the
first round, which counts the account reads too, is the service's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from .clock import loop_time, wait_event
from .parsing import REASONS, NotReady, PollError, Worker
from .settings import PollingSettings
from .targets import Target

log = logging.getLogger(__name__)

JITTER = 0.05  # each interval is stretched or shrunk by up to 5% so targets drift apart
MAX_BACKOFF_INTERVALS = 10
MAX_BACKOFF_EXPONENT = 10  # 2**10 > MAX_BACKOFF_INTERVALS: the cap is reached before this
MAX_RETRY_AFTER = 3600.0

FetchWorkers = Callable[[Target], Awaitable[list[Worker]]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TargetState:
    """What is known of one target after its polls; replaced, never mutated."""

    target: Target
    polled: bool = False
    up: bool = False
    # The last poll's workers, each an exact tuple of a Worker's fields (Worker._make gives the
    # Worker back): the garbage collector stops tracking those, where it walked every Worker
    # (a NamedTuple) at each collection, most of what a full collection walks at 10,000 workers.
    workers: tuple[tuple[str, str | None, bytes, str | None], ...] = ()
    last_success: float | None = None  # wall clock, exported
    last_success_monotonic: float | None = None  # for staleness, immune to clock steps
    last_attempt: float | None = None
    last_duration: float | None = None
    last_error: str | None = None
    last_error_message: str = ""
    errors: tuple[int, ...] = (0,) * len(REASONS)
    rate_limited_streak: int = 0
    retry_after: float | None = None
    truncated: bool = False  # more workers than polling.max_workers_per_target
    not_ready: bool = False  # the last poll answered HTTP 200 {"error_msg": ...}
    not_ready_message: str = ""  # that message (key scrubbed)

    def holds_workers(self, now: float, stale_after: float) -> bool:
        """Whether this target's workers are exported: up, or down for less than stale_after.

        `now` is time.monotonic(), like last_success_monotonic.
        """
        if self.up:
            return True
        since = self.last_success_monotonic
        return since is not None and now - since <= stale_after

    def worker_ids(self) -> Iterator[str]:
        return (worker[0] for worker in self.workers)  # a Worker's first field: its id


class Scheduler:
    """Polls every target at start-up and then every interval, at most `concurrency` at once."""

    def __init__(
        self,
        fetch: FetchWorkers,
        polling: PollingSettings,
        on_change: Callable[[], None],
        on_success: Callable[[Target, tuple[Worker, ...]], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._polling = polling
        self._on_change = on_change
        self._on_success = on_success  # the workers of each successful poll (lifecycle)
        self._semaphore = asyncio.Semaphore(polling.concurrency)
        self._states: dict[str, TargetState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.first_round = asyncio.Event()  # set once targets exist and all have been polled
        self._settings_changed = asyncio.Event()

    def states(self) -> tuple[TargetState, ...]:
        return tuple(self._states.values())

    @property
    def ready(self) -> bool:
        """True once every target has been polled at least once (success or failure)."""
        return all(state.polled for state in self._states.values())

    def update_polling(self, polling: PollingSettings) -> None:
        """New settings from a reload. Targets waiting for their next poll wake up and wait
        under the new interval instead; a new concurrency limit applies to polls not yet queued."""
        if polling.concurrency != self._polling.concurrency:
            self._semaphore = asyncio.Semaphore(polling.concurrency)
        self._polling = polling
        self._settings_changed.set()
        self._settings_changed = asyncio.Event()

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
        # The target may be removed (and this task cancelled) at any await; stop when it is.
        while key in self._states:
            async with self._semaphore:
                if key in self._states:
                    await self.poll(key)
            await self._wait_for_next_poll(key)

    async def _wait_for_next_poll(self, key: str) -> None:
        """Sleep until the next poll is due, re-planned under new settings when they change."""
        started = loop_time()

        def remaining() -> float | None:
            state = self._states.get(key)
            if state is None:
                return None
            return self._next_delay(state) - (loop_time() - started)

        await wait_replanned(remaining, lambda: self._settings_changed)

    async def poll(self, key: str) -> None:
        """Poll one target once and record the outcome; no exception ends a target's polling."""
        state = self._states[key]
        outcome, result = await attempt(state, lambda: self._fetch_or_not_ready(state.target))
        if result is not None:
            workers, not_ready = result
            outcome = note_readiness(self._keep_workers(outcome, workers), state, not_ready)
        current = self._states.get(key)
        if current is not None:  # set_targets may have relabelled it while we waited
            new = self._states[key] = replace(outcome, target=current.target)
            if result is not None and self._on_success is not None:
                self._on_success(new.target, tuple(map(Worker._make, new.workers)))
            self._note_first_round()
            self._on_change()

    async def _fetch_or_not_ready(self, target: Target) -> tuple[list[Worker], str | None]:
        """The target's workers, or none and Vast's message while it is not ready yet."""
        try:
            return await self._fetch(target), None
        except NotReady as exc:
            return [], exc.message

    def _keep_workers(self, state: TargetState, workers: list[Worker]) -> TargetState:
        """The workers of a successful poll, at most polling.max_workers_per_target of them."""
        cap = self._polling.max_workers_per_target
        truncated = len(workers) > cap
        if truncated and not state.truncated:
            fields = {"kind": state.target.kind, "id": state.target.id, "workers": len(workers)}
            log.warning(
                f"target reports more workers than polling.max_workers_per_target ({cap}); "
                "exporting the first ones only",
                extra={"fields": fields},
            )
        return replace(state, workers=tuple(map(tuple, workers[:cap])), truncated=truncated)

    def _note_first_round(self) -> None:
        """Set `first_round` once every target has been polled (the service logs the round,
        account reads included)."""
        if not self.first_round.is_set() and self.ready:
            self.first_round.set()

    def _next_delay(self, state: TargetState) -> float:
        return next_delay(self._polling.interval, state.rate_limited_streak, state.retry_after)


async def wait_replanned(
    remaining: Callable[[], float | None], changed: Callable[[], asyncio.Event]
) -> None:
    """Sleep for `remaining()` seconds (None: not at all), asking again whenever the event
    `changed()` returns is set: a reload then shortens or lengthens the wait in progress."""
    while (left := remaining()) is not None and left > 0:
        if not await wait_event(changed(), left):
            return


def next_delay(interval: float, rate_limited_streak: int, retry_after: float | None) -> float:
    """The interval with jitter; after consecutive 429s, exponential backoff up to 10 intervals,
    or longer if the API's Retry-After asks for it (capped at an hour)."""
    if not rate_limited_streak:
        return interval * random.uniform(1 - JITTER, 1 + JITTER)
    exponent = min(rate_limited_streak, MAX_BACKOFF_EXPONENT)
    delay = min(interval * 2**exponent, MAX_BACKOFF_INTERVALS * interval)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


async def attempt(
    state: TargetState, call: Callable[[], Awaitable[T]]
) -> tuple[TargetState, T | None]:
    """Run one poll of a target: its new state, and the result (None when it failed)."""
    started = loop_time()
    try:
        result = await call()
    except PollError as exc:
        return record_failure(state, exc, loop_time() - started), None
    except Exception as exc:  # a bug or an input nobody foresaw: report it, keep polling
        log.debug("unexpected poll failure", exc_info=True)
        error = PollError("invalid_response", f"unexpected {type(exc).__name__}: {exc}")
        return record_failure(state, error, loop_time() - started), None
    return record_success(state, loop_time() - started), result


def note_readiness(new: TargetState, old: TargetState, message: str | None) -> TargetState:
    """A successful poll's state with its not-ready message; logs entering and leaving."""
    fields: dict[str, object] = {"kind": new.target.kind, "id": new.target.id}
    if message is not None and not old.not_ready:
        log.info(
            "target not ready: Vast cannot list its workers yet (check the key's scope and "
            "the endpoint if this lasts)",
            extra={"fields": {**fields, "message": message}},
        )
    elif message is None and old.not_ready:
        log.info("target ready", extra={"fields": fields})
    if message is None:
        return new
    return replace(new, not_ready=True, not_ready_message=message)


def record_success(state: TargetState, duration: float) -> TargetState:
    """The state after a successful poll; logs the way back up."""
    now = time.time()
    if state.polled and not state.up:
        fields: dict[str, object] = {"kind": state.target.kind, "id": state.target.id}
        if state.last_success is not None:
            fields["down_for"] = f"{now - state.last_success:.0f}s"
        log.info("target up", extra={"fields": fields})
    return replace(
        state,
        polled=True,
        up=True,
        last_success=now,
        last_success_monotonic=loop_time(),
        last_attempt=now,
        last_duration=duration,
        last_error=None,
        last_error_message="",
        rate_limited_streak=0,
        retry_after=None,
        not_ready=False,
        not_ready_message="",
    )


def record_failure(state: TargetState, error: PollError, duration: float) -> TargetState:
    """The state after a failed poll (last-known workers kept); logs the way down, and a new
    reason while down (after a reload fixed the URL but not the key, say)."""
    fields = {
        "kind": state.target.kind,
        "id": state.target.id,
        "reason": error.reason,
        "error": error.message,
    }
    if not state.polled or state.up:
        log.warning("target down", extra={"fields": fields})
    elif state.last_error != error.reason:
        fields = {**fields, "previous_reason": state.last_error}
        log.warning("target still down, reason changed", extra={"fields": fields})
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
        not_ready=False,
        not_ready_message="",
    )
