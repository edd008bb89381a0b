"""The scheduler in-process: backoff arithmetic, resilience to unexpected errors, expiry."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import pytest

from exporter import cli
from exporter.parsing import REASONS, PollError, parse_workers_payload
from exporter.render_loop import MetricsCache
from exporter.scheduler import Scheduler, next_delay
from exporter.settings import PollingSettings
from exporter.targets import Target

from .fakevast import worker

TARGET = Target("endpoint", 1)


def test_next_delay_jitter_backoff_cap_and_retry_after() -> None:
    delays = [next_delay(10.0, 0, None) for _ in range(200)]
    assert min(delays) >= 9.5 and max(delays) <= 10.5 and len(set(delays)) > 1
    assert [next_delay(10.0, streak, None) for streak in (1, 2, 3, 4, 5)] == [
        20.0,
        40.0,
        80.0,
        100.0,
        100.0,
    ]
    assert next_delay(10.0, 5000, None) == 100.0  # no overflow after a long streak
    assert next_delay(10.0, 1, 300.0) == 300.0  # Retry-After longer than the backoff wins
    assert next_delay(10.0, 3, 5.0) == 80.0  # ... but never shortens it
    assert next_delay(10.0, 1, 1e9) == 3600.0  # and is capped at an hour


class ScriptedFetch:
    """A fetch function that plays back outcomes, then repeats the last one."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, target: Target) -> list:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return parse_workers_payload(outcome)


async def run_scheduler(fetch: ScriptedFetch, seconds: float, **polling: float) -> Scheduler:
    settings = PollingSettings(**{"interval": 0.05, "concurrency": 2, "stale_after": 60, **polling})
    scheduler = Scheduler(fetch, settings, lambda: None)
    scheduler.set_targets([TARGET])
    await asyncio.sleep(seconds)
    await scheduler.stop()
    return scheduler


@pytest.mark.virtual_time
async def test_an_unexpected_exception_is_reported_and_polling_goes_on() -> None:
    fetch = ScriptedFetch(RuntimeError("boom"), OverflowError("big"), [worker(1)])
    scheduler = await run_scheduler(fetch, 0.5)
    [state] = scheduler.states()
    assert fetch.calls >= 4
    assert state.up and [worker_id for worker_id, *_ in state.workers] == ["1"]
    assert state.errors[REASONS.index("invalid_response")] == 2


async def test_the_429_streak_resets_after_a_success() -> None:
    limited = PollError("rate_limited", "slow down", retry_after=7.0)
    fetch = ScriptedFetch(limited, limited, [worker(1)], limited)
    settings = PollingSettings(interval=3600, concurrency=1, stale_after=60)
    scheduler = Scheduler(fetch, settings, lambda: None)
    scheduler.set_targets([TARGET])
    await scheduler.stop()  # no background polls: drive them one by one
    seen = []
    for _ in range(4):
        await scheduler.poll(TARGET.key)
        [state] = scheduler.states()
        seen.append((state.rate_limited_streak, state.retry_after, state.up))
    assert seen == [(1, 7.0, False), (2, 7.0, False), (0, None, True), (1, 7.0, False)]


@pytest.mark.virtual_time
async def test_failing_target_expires_by_timer_without_new_polls() -> None:
    fetch = ScriptedFetch([worker(1)], PollError("rate_limited", "x", retry_after=3600))
    settings = PollingSettings(interval=0.05, concurrency=1, stale_after=0.3)
    cache: MetricsCache | None = None
    scheduler = Scheduler(fetch, settings, lambda: cache.mark_changed() if cache else None)
    cache = MetricsCache(scheduler.states, settings.stale_after, refresh_every=0.1)
    renderer = asyncio.create_task(cache.run())
    scheduler.set_targets([TARGET])
    await asyncio.sleep(0.2)
    assert fetch.calls == 2  # one success, one 429 asking to wait an hour
    assert [row.worker.id for row in cache.snapshot.workers] == ["1"]
    await asyncio.sleep(0.5)  # no poll happens, but the periodic render expires the worker
    assert fetch.calls == 2
    assert cache.snapshot.workers == ()
    renderer.cancel()
    await scheduler.stop()


def test_stop_deadline_and_second_signal_force_the_exit(monkeypatch, caplog) -> None:
    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    monkeypatch.setattr(cli, "SHUTDOWN_DEADLINE", 0.05)
    monkeypatch.setattr(cli.logging, "shutdown", lambda: None)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING):
        cli._request_stop(stop, signal.SIGTERM)
        assert stop.is_set() and exits == []
        cli._request_stop(stop, signal.SIGTERM)  # a repeated SIGTERM changes nothing
        assert exits == []
        cli._request_stop(stop, signal.SIGINT)  # a second Ctrl-C exits at once
        assert exits == [0]
        time.sleep(0.3)  # the first signal's deadline passes
    assert exits == [0, 0]
    reasons = [record.fields["why"] for record in caplog.records]
    assert reasons == ["second interrupt", "shutdown deadline passed"]
