"""Serverless lifecycle per endpoint: cold starts, workers added and removed, time per status.

Fed with the workers of every successful poll of a target (`poll_succeeded`), the tracker keeps,
per target, only what its last successful poll showed of each worker (status, whether it had
loaded); from one successful poll to the next it counts, per endpoint:

- a cold start, once per worker, the first time a poll shows it loaded (`loaded_at` > 0), as
  `loaded_at - started_at` (`- created_at` without `started_at`), provided the load happened
  while the exporter was watching: an earlier poll showed the worker not loaded yet, or its
  `loaded_at` is later than the previous successful poll of the target (it appeared and loaded
  in between, during a failed poll for instance). Workers of a target's first successful poll
  are never observed, nor values below 0 or over a day;
- workers added (in this poll, not in the previous one) and removed (the other way round); a
  target's first successful poll counts nothing, a failed poll is not a poll here at all;
- worker seconds per status: every worker of a poll is charged, under the status this poll
  shows, the time since the previous successful poll of its target. Each poll adds exactly
  elapsed x workers, and the per-status rates add up to the number of workers;
- errors: a worker seen in an error status (ERROR_STATUSES) that was not in one at the previous
  poll (a worker that appears in one counts too).

Which targets count: an endpoint's own target when one exists in the configuration (merged with
discovery, before sharding), else each of its worker-group targets (their workers are disjoint).
A worker reported both by an endpoint and by its group is so counted once, and with sharding the
endpoint's counts come from the replica that polls the endpoint target.

Time comes from `clock` (wall and monotonic seconds), replaceable in tests; `observe` takes the
times as arguments. Memory is bounded by the workers of the last poll of each polled target and
by MAX_STATUSES statuses per endpoint.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .parsing import Worker
from .targets import Kind, Target

# Upper bounds of the cold-start histogram: 15s, 30s, 1m, 2m, 5m, 10m, 20m, 30m, 1h (+Inf).
BUCKETS = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
MAX_COLD_START = 86400.0  # over a day is not a cold start but a clock or field problem
# Statuses that count as a worker error (lower-cased, as exported).
ERROR_STATUSES = frozenset({"error", "unavail", "offline", "exited"})
UNKNOWN_STATUS = "unknown"  # a worker without a status field
OTHER_STATUS = "other"  # statuses beyond MAX_STATUSES distinct ones of an endpoint
MAX_STATUSES = 24

Clock = Callable[[], tuple[float, float]]


def system_clock() -> tuple[float, float]:
    return time.time(), time.monotonic()


@dataclass(frozen=True, slots=True)
class EndpointLifecycle:
    """What the snapshot exports of one endpoint; immutable."""

    endpoint_id: str
    endpoint_name: str
    cold_start_buckets: tuple[int, ...]  # cumulative counts, one per BUCKETS entry then +Inf
    cold_start_sum: float
    added: int
    removed: int
    errors: int
    state_seconds: tuple[tuple[str, float], ...]  # (status, seconds), sorted by status


@dataclass(slots=True)
class _Counts:
    name: str
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    cold_sum: float = 0.0
    added: int = 0
    removed: int = 0
    errors: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def observe_cold_start(self, value: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, value)] += 1
        self.cold_sum += value

    def charge(self, status: str, seconds: float) -> None:
        if status not in self.seconds and len(self.seconds) >= MAX_STATUSES:
            status = OTHER_STATUS
        self.seconds[status] = self.seconds.get(status, 0.0) + seconds


# What the last poll saw of a worker: its status, and whether it was seen loaded at that poll or
# an earlier one (its cold start is done). A plain tuple of a string and a bool, which the
# garbage collector stops tracking, where it walked a dataclass per worker at each collection.
_Seen = tuple[str, bool]


@dataclass(slots=True)
class _Last:
    """A target's last successful poll, as far as the lifecycle goes."""

    wall: float
    monotonic: float
    workers: dict[str, _Seen]


def endpoint_of(target: Target) -> str:
    """The endpoint id a target's workers count under ("" when unknown)."""
    if target.kind == Kind.ENDPOINT:
        return str(target.id)
    return "" if target.endpoint_id is None else str(target.endpoint_id)


def cold_start(worker: Worker) -> float | None:
    """loaded_at - started_at (or - created_at), None without both or when implausible."""
    loaded = worker.value("loaded_timestamp_seconds")
    start = worker.value("started_timestamp_seconds") or worker.value("created_timestamp_seconds")
    if not loaded or loaded <= 0 or not start or start <= 0:
        return None
    seconds = loaded - start
    return seconds if 0 <= seconds <= MAX_COLD_START else None


class LifecycleTracker:
    def __init__(self, clock: Clock = system_clock) -> None:
        self.clock = clock
        self._with_endpoint_target: set[str] = set()
        self._polled: dict[str, Target] = {}  # key -> target, the counted ones this replica polls
        self._last: dict[str, _Last] = {}  # target key -> its last successful poll
        self._counts: dict[str, _Counts] = {}  # endpoint id -> counters

    def counts(self, target: Target) -> bool:
        """Whether this target's workers are counted (see the module docstring)."""
        if target.kind == Kind.ENDPOINT:
            return True
        return target.kind == Kind.WORKER_GROUP and (
            endpoint_of(target) not in self._with_endpoint_target
        )

    def set_targets(self, polled: Iterable[Target], all_targets: Iterable[Target]) -> None:
        """This replica's targets and every target of the configuration (all shards).

        Targets no longer polled or counted are forgotten, and so are the counters of endpoints
        none of whose targets is counted any more (their series disappear, as the workers do).
        """
        self._with_endpoint_target = {
            endpoint_of(t) for t in all_targets if t.kind == Kind.ENDPOINT
        }
        self._polled = {t.key: t for t in polled if self.counts(t)}
        for key in [key for key in self._last if key not in self._polled]:
            del self._last[key]
        wanted = {endpoint_of(t) for t in self._polled.values()}
        for endpoint in [e for e in self._counts if e not in wanted]:
            del self._counts[endpoint]

    def poll_succeeded(self, target: Target, workers: Iterable[Worker]) -> None:
        """The scheduler's hook: a successful poll's workers, at the clock's time."""
        wall, monotonic = self.clock()
        self.observe(target, workers, wall, monotonic)

    def observe(
        self, target: Target, workers: Iterable[Worker], wall: float, monotonic: float
    ) -> None:
        """Count what changed since the target's previous successful poll (wall: unix seconds,
        compared with loaded_at; monotonic: for the elapsed time)."""
        if target.key not in self._polled or not self.counts(target):
            return
        endpoint = endpoint_of(target)
        counts = self._counts.get(endpoint)
        name = target.name if target.kind == Kind.ENDPOINT else target.endpoint_name
        if counts is None:
            counts = self._counts[endpoint] = _Counts(name)
        counts.name = name  # the latest name: a rename moves the series, not the counts
        last = self._last.get(target.key)
        seen: dict[str, _Seen] = {}
        if last is None:  # the first successful poll: what is there already is no event
            for worker in workers:
                seen[worker.id] = (_status(worker), _is_loaded(worker))
            self._last[target.key] = _Last(wall, monotonic, seen)
            return
        elapsed = max(0.0, monotonic - last.monotonic)
        for worker in workers:
            status, loaded = _status(worker), _is_loaded(worker)
            before = last.workers.get(worker.id)
            if before is None:
                counts.added += 1
            counts.charge(status, elapsed)
            if status in ERROR_STATUSES and (before is None or before[0] not in ERROR_STATUSES):
                counts.errors += 1
            was_loaded = before is not None and before[1]
            if loaded and not was_loaded:
                value = cold_start(worker)
                loaded_at = worker.value("loaded_timestamp_seconds") or 0.0
                if value is not None and (before is not None or loaded_at > last.wall):
                    counts.observe_cold_start(value)
            seen[worker.id] = (status, loaded or was_loaded)
        counts.removed += sum(1 for worker_id in last.workers if worker_id not in seen)
        self._last[target.key] = _Last(wall, monotonic, seen)

    def view(self) -> tuple[EndpointLifecycle, ...]:
        """An immutable copy of every endpoint's counters, for a snapshot."""
        out = []
        for endpoint, counts in sorted(self._counts.items()):
            cumulative, total = [], 0
            for count in counts.buckets:
                total += count
                cumulative.append(total)
            out.append(
                EndpointLifecycle(
                    endpoint,
                    counts.name,
                    tuple(cumulative),
                    counts.cold_sum,
                    counts.added,
                    counts.removed,
                    counts.errors,
                    tuple(sorted(counts.seconds.items())),
                )
            )
        return tuple(out)


def _status(worker: Worker) -> str:
    return worker.status or UNKNOWN_STATUS


def _is_loaded(worker: Worker) -> bool:
    return (worker.value("loaded_timestamp_seconds") or 0.0) > 0
