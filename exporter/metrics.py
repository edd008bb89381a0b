"""Metrics: an immutable snapshot of the last polls, merged per worker and rendered once.

The scheduler hands over frozen TargetState records; `build_snapshot` merges them into one row per
worker. The `exposition` module renders the per-worker families (the workers' own, and those the
account reads' views declare as WorkerFamily specs) itself, and the rest, few series, through
prometheus-client with `ClientRenderedFamilies`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from . import __version__
from .fields import WORKER_FIELDS, Field
from .lifecycle import BUCKETS, EndpointLifecycle
from .parsing import REASONS, Worker
from .scheduler import TargetState
from .targets import Kind, Target
from .worker_families import WorkerFamily, WorkerSeries

TARGET_LABELS = ("kind", "id", "name")
CACHED = "cached from the last poll"
LISTED = "cached from the last account listing"


# (metric suffix, HELP) of every worker gauge but status, in exposition order.
WORKER_FAMILIES = tuple((field.metric, f"{field.help}; {CACHED}.") for field in WORKER_FIELDS)
STATUS_HELP = f"Status of the worker as a label (lower-cased status field), value 1; {CACHED}."
DEPLOYMENT_HELP = (
    f"Deployment version the worker runs (deployment_version_id), as a label; value 1; {CACHED}."
)
# The two labelled families of the worker lists, after WORKER_FAMILIES.
STATUS_FAMILY = WorkerFamily("vastai_worker_status", STATUS_HELP, ("status",))
DEPLOYMENT_FAMILY = WorkerFamily(
    "vastai_worker_deployment_info", DEPLOYMENT_HELP, ("deployment_version_id",)
)


@dataclass(slots=True)
class WorkerRow:
    """One exported worker: merged labels and the figures of its freshest report."""

    worker: Worker
    seen_at: float
    endpoint_id: str = ""
    endpoint_name: str = ""
    worker_group_id: str = ""
    from_endpoint: bool = False

    def labels(self) -> tuple[str, str, str, str]:
        return (self.endpoint_id, self.endpoint_name, self.worker_group_id, self.worker.id)


@dataclass(frozen=True)
class ReloadStatus:
    """Outcome of the last configuration (re)load, for the reload metrics."""

    successful: bool = True
    success_timestamp: float = 0.0


# A snapshot's worker row flattened into an exact tuple of its worker's id, status, figures and
# deployment and WorkerRow's other fields, in their order. The garbage collector stops tracking
# a tuple of strings and numbers at its first look, where it walks every WorkerRow and every
# Worker (a NamedTuple) at each collection: at 10,000 workers, with the old snapshot and the new
# alive during a render, 40,000 of a full collection's 57,000 objects, and most of its 15 to
# 35 ms pause of the event loop. What the account reads know of a worker stays in their views,
# joined by worker id when rendered (View.worker_families).
FlatRow = tuple[str, str | None, bytes, str | None, float, str, str, str, bool]
ROW_ID, ROW_STATUS, ROW_FIGURES, ROW_DEPLOYMENT = 0, 1, 2, 3
ROW_SEEN_AT, ROW_ENDPOINT_ID, ROW_ENDPOINT_NAME, ROW_GROUP_ID, ROW_FROM_ENDPOINT = 4, 5, 6, 7, 8


def worker_row(flat: FlatRow) -> WorkerRow:
    """The WorkerRow a FlatRow was made from (equal, not the same objects)."""
    return WorkerRow(Worker(*flat[:4]), *flat[4:])


@dataclass(frozen=True)
class Snapshot:
    targets: tuple[TargetState, ...]
    rows: tuple[FlatRow, ...]  # one per worker, flattened (see FlatRow)
    held: dict[str, int] = field(default_factory=dict)  # target key -> workers it contributes
    taken_at: float = 0.0  # time.monotonic()
    reload: ReloadStatus = field(default_factory=ReloadStatus)
    views: tuple[View, ...] = ()  # what the account reads add (listing, instances, billing)
    requests: tuple[tuple[tuple[str, str, str], int], ...] = ()  # (host, path, code) -> count
    web_config_successful: bool = True  # the last read of --web.config.file (True without one)
    lifecycle: tuple[EndpointLifecycle, ...] = ()  # cold starts, scaling, time per status

    @property
    def workers(self) -> tuple[WorkerRow, ...]:
        """The merged worker rows, made again from `rows` at each call."""
        return tuple(map(worker_row, self.rows))


class View:
    """What one account read adds to a snapshot: immutable, made when the snapshot is taken.

    Each read (exporter/reads.py) declares its own: `worker_families` its series per worker
    (rendered after the workers' own families, in views' order), `families` its other metric
    families (rendered through prometheus-client, after the targets').
    """

    def worker_families(self, statuses: Mapping[str, str | None]) -> Iterator[WorkerSeries]:
        """Each WorkerFamily the read declares, with its values by worker id; yielded even when
        empty, so that its HELP is there while the read runs. `statuses`: each merged worker's
        status (worker id -> lower-cased status, None when not reported), for what depends on
        it. Called at each render, on the render thread: a family's values are dropped before
        the next family's are made."""
        return iter(())

    def families(self) -> Iterator[Metric]:
        return iter(())


def build_snapshot(
    states: Iterable[TargetState],
    stale_after: float,
    now: float,
    reload: ReloadStatus | None = None,
    views: Iterable[View] = (),
    requests: tuple[tuple[tuple[str, str, str], int], ...] = (),
    web_config_successful: bool = True,
    lifecycle: tuple[EndpointLifecycle, ...] = (),
) -> Snapshot:
    """Merge every target's workers into one row per worker id (`now`: time.monotonic()).

    The endpoint target decides `endpoint_id`/`endpoint_name` (a group's configured endpoint
    is the fallback), a group target decides `worker_group_id`, and the freshest report wins
    for the figures.
    """
    states = tuple(states)
    # Rows are built as flat tuples from the start: a merge that made a WorkerRow and a Worker
    # per worker had young collections promote 20,000 objects at 10,000 workers, and soon a
    # full collection (5 to 13 ms holding the GIL) walk them.
    rows: dict[str, FlatRow] = {}
    held: dict[str, int] = {}
    for state in states:
        if not state.workers or not state.holds_workers(now, stale_after):
            held[state.target.key] = 0
            continue
        held[state.target.key] = len(state.workers)
        seen_at = state.last_success or 0.0
        label = _labeller(state.target)  # label strings made once per target, shared by rows
        for fields in state.workers:
            worker_id = fields[0]
            row = rows.get(worker_id)
            if row is None:
                row = (*fields, seen_at, "", "", "", False)
            elif seen_at > row[ROW_SEEN_AT]:
                row = (*fields, seen_at, *row[ROW_ENDPOINT_ID:])
            rows[worker_id] = label(row)
    return Snapshot(
        states,
        tuple(rows.values()),
        held,
        now,
        reload or ReloadStatus(),
        tuple(views),
        requests,
        web_config_successful,
        lifecycle,
    )


def _labeller(target: Target) -> Callable[[FlatRow], FlatRow]:
    """What a target's report says of a row's labels: the endpoint target decides the endpoint
    labels, a group target its group label and, failing an endpoint target, the endpoint."""
    target_id = str(target.id)
    if target.kind == Kind.ENDPOINT:
        name = target.name

        def label_endpoint(row: FlatRow) -> FlatRow:
            return (*row[:ROW_ENDPOINT_ID], target_id, name, row[ROW_GROUP_ID], True)

        return label_endpoint
    endpoint_id = None if target.endpoint_id is None else str(target.endpoint_id)
    endpoint_name = target.endpoint_name

    def label_group(row: FlatRow) -> FlatRow:
        from_endpoint = row[ROW_FROM_ENDPOINT]
        if not from_endpoint and endpoint_id is not None and not row[ROW_ENDPOINT_ID]:
            return (*row[:ROW_ENDPOINT_ID], endpoint_id, endpoint_name, target_id, from_endpoint)
        return (*row[:ROW_GROUP_ID], target_id, from_endpoint)

    return label_group


class ClientRenderedFamilies:
    """A prometheus-client collector of a snapshot's families that are not per worker: the
    targets', the views' own, the endpoints' lifecycle, build info and reloads. A few hundred
    series at most, so prometheus-client renders them (exposition.py renders the rest)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._target_families()
        for view in self._snapshot.views:
            yield from view.families()
        yield from self._lifecycle_families()
        info = GaugeMetricFamily(
            "vastai_exporter_build_info", "Version of vastai-exporter; value 1", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        reload = self._snapshot.reload
        yield GaugeMetricFamily(
            "vastai_exporter_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded, else 0",
            value=1 if reload.successful else 0,
        )
        yield GaugeMetricFamily(
            "vastai_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load",
            value=reload.success_timestamp,
        )
        yield GaugeMetricFamily(
            "vastai_exporter_web_config_last_reload_successful",
            "1 if the last read of the web config file succeeded (also without one), else 0",
            value=1 if self._snapshot.web_config_successful else 0,
        )

    def _lifecycle_families(self) -> Iterator[Metric]:
        """Cold starts, scaling and time per status of each endpoint (exporter/lifecycle.py)."""
        labels = ("endpoint_id", "endpoint_name")
        since = "counted by this exporter since it started, from successive successful polls"
        cold = HistogramMetricFamily(
            "vastai_endpoint_cold_start_seconds",
            "Time workers took from start to loaded (loaded_at - started_at), observed once per "
            f"worker seen loading and then loaded; {since}.",
            labels=labels,
        )
        added = CounterMetricFamily(
            "vastai_endpoint_workers_added",
            f"Workers that appeared in a poll of the endpoint; {since}.",
            labels=labels,
        )
        removed = CounterMetricFamily(
            "vastai_endpoint_workers_removed",
            f"Workers that disappeared from a poll of the endpoint; {since}.",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "vastai_endpoint_worker_errors",
            f"Transitions of the endpoint's workers into an error status; {since}.",
            labels=labels,
        )
        seconds = CounterMetricFamily(
            "vastai_endpoint_worker_state_seconds",
            "Worker seconds the endpoint's workers spent in each status (each poll's status "
            f"charged for the time since the previous poll); {since}.",
            labels=(*labels, "status"),
        )
        bounds = [floatToGoString(b) for b in BUCKETS] + ["+Inf"]
        for endpoint in self._snapshot.lifecycle:
            values = (endpoint.endpoint_id, endpoint.endpoint_name)
            buckets = list(zip(bounds, endpoint.cold_start_buckets, strict=True))
            cold.add_metric(values, buckets, endpoint.cold_start_sum)
            added.add_metric(values, endpoint.added)
            removed.add_metric(values, endpoint.removed)
            errors.add_metric(values, endpoint.errors)
            for status, value in endpoint.state_seconds:
                seconds.add_metric((*values, status), value)
        yield from (cold, added, removed, errors, seconds)

    def _target_families(self) -> Iterator[Metric]:
        def gauge(name: str, help_text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, f"{help_text}; {CACHED}.", labels=TARGET_LABELS)

        up = gauge("vastai_target_up", "1 if the last poll of the target succeeded, else 0")
        workers = gauge("vastai_target_workers", "Workers the target contributes to the export")
        success = gauge(
            "vastai_target_last_success_timestamp_seconds",
            "Unix time of the target's last successful poll",
        )
        duration = gauge(
            "vastai_target_poll_duration_seconds", "Duration of the target's last poll in seconds"
        )
        not_ready = gauge(
            "vastai_target_not_ready",
            "1 while the target's last poll answered that Vast cannot list its workers yet "
            '(HTTP 200 {"error_msg": ...}), else 0',
        )
        errors = CounterMetricFamily(
            "vastai_target_poll_errors",
            f"Failed polls of the target by reason; counted by the poller, {CACHED}.",
            labels=("kind", "id", "reason"),
        )
        for state in self._snapshot.targets:
            target = state.target
            labels = (target.kind, str(target.id), target.name)
            for reason, count in zip(REASONS, state.errors, strict=True):
                errors.add_metric((target.kind, str(target.id), reason), count)
            if not state.polled:
                continue
            up.add_metric(labels, 1 if state.up else 0)
            if target.kind in (Kind.ENDPOINT, Kind.WORKER_GROUP):  # listings carry no workers
                workers.add_metric(labels, self._snapshot.held.get(target.key, 0))
                not_ready.add_metric(labels, 1 if state.not_ready else 0)
            if state.last_success is not None:
                success.add_metric(labels, state.last_success)
            if state.last_duration is not None:
                duration.add_metric(labels, state.last_duration)
        yield from (up, workers, not_ready, success, duration, errors)
        requests = CounterMetricFamily(
            "vastai_exporter_api_requests",
            "Requests the exporter sent to Vast, by host (api: worker lists, console: account "
            "reads), route and HTTP status code (timeout or connection when none came back)",
            labels=("host", "path", "code"),
        )
        for labels, count in self._snapshot.requests:
            requests.add_metric(labels, count)
        yield requests


def setting_families(
    prefix: str, fields: tuple[Field, ...], labels: tuple[str, ...]
) -> dict[str, GaugeMetricFamily]:
    """One gauge per listing field, by metric suffix, named <prefix>_<suffix>."""
    return {
        entry.metric: GaugeMetricFamily(
            f"{prefix}_{entry.metric}", f"{entry.help}; {LISTED}.", labels=labels
        )
        for entry in fields
    }
