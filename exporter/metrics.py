"""Metrics: an immutable snapshot of the last polls, merged per worker and rendered once.

The scheduler hands over frozen TargetState records; `build_snapshot` merges them into one row per
worker, and `SnapshotCollector` describes the result with prometheus-client's own types. The
`exposition` module renders it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from . import __version__
from .fields import (
    INSTANCE_FIELDS,
    INSTANCE_LABEL_FIELDS,
    WORKER_FIELDS,
    Field,
)
from .lifecycle import BUCKETS, EndpointLifecycle
from .parsing import REASONS, Instance, Worker
from .pricing import billed_dollars_per_hour
from .scheduler import TargetState
from .targets import Kind, Target

WORKER_LABELS = ("endpoint_id", "endpoint_name", "worker_group_id", "worker_id")
TARGET_LABELS = ("kind", "id", "name")
CACHED = "cached from the last poll"
LISTED = "cached from the last account listing"


# (metric suffix, HELP) of every worker gauge but status, in exposition order.
WORKER_FAMILIES = tuple((field.metric, f"{field.help}; {CACHED}.") for field in WORKER_FIELDS)
LISTED_INSTANCES = "cached from the last instance list"
# (metric suffix, HELP) of the instance-list gauges per worker, in exposition order.
INSTANCE_FAMILIES = tuple(
    (field.metric, f"{field.help}; {LISTED_INSTANCES}.") for field in INSTANCE_FIELDS
)
BILLED_HELP = (
    "What Vast bills for the worker now in dollars per hour: dph_total while its state bills "
    "GPU compute (ready, loading), storage_total_cost while creating or inactive, 0 where not "
    f"billed; {LISTED_INSTANCES}."
)
INSTANCE_STATUS_HELP = (
    f"Status of the worker's instance (lower-cased actual_status) as a label; value 1; "
    f"{LISTED_INSTANCES}."
)
INSTANCE_HELP = f"Hardware of the worker's instance, as labels; value 1; {LISTED_INSTANCES}."
STATUS_HELP = f"Status of the worker as a label (lower-cased status field), value 1; {CACHED}."
DEPLOYMENT_HELP = (
    f"Deployment version the worker runs (deployment_version_id), as a label; value 1; {CACHED}."
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
    instance: Instance | None = None  # from the account's instance list, if it has this worker

    def labels(self) -> tuple[str, str, str, str]:
        return (self.endpoint_id, self.endpoint_name, self.worker_group_id, self.worker.id)


@dataclass(frozen=True)
class ReloadStatus:
    """Outcome of the last configuration (re)load, for the reload metrics."""

    successful: bool = True
    success_timestamp: float = 0.0


# A snapshot's worker row flattened into an exact tuple of its worker's id, status, figures and
# deployment and WorkerRow's other fields, in their order. The garbage collector stops tracking
# a tuple of strings and numbers at its first look (unless the row has an Instance), where it
# walks every WorkerRow and every Worker (a NamedTuple) at each collection: at 10,000 workers,
# with the old snapshot and the new alive during a render, 40,000 of a full collection's 57,000
# objects, and most of its 15 to 35 ms pause of the event loop.
FlatRow = tuple[str, str | None, bytes, str | None, float, str, str, str, bool, Instance | None]
ROW_ID, ROW_STATUS, ROW_FIGURES, ROW_DEPLOYMENT = 0, 1, 2, 3
ROW_SEEN_AT, ROW_ENDPOINT_ID, ROW_ENDPOINT_NAME, ROW_GROUP_ID, ROW_FROM_ENDPOINT = 4, 5, 6, 7, 8
ROW_INSTANCE = 9


def flat_row(row: WorkerRow) -> FlatRow:
    worker = row.worker
    return (
        worker.id,
        worker.status,
        worker.figures,
        worker.deployment,
        row.seen_at,
        row.endpoint_id,
        row.endpoint_name,
        row.worker_group_id,
        row.from_endpoint,
        row.instance,
    )


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

    Each read (exporter/reads.py) declares its own: `join` may add to the merged worker rows
    (the instance list does), `families` yields its metric families.
    """

    def join(self, rows: Iterable[WorkerRow]) -> None:
        """Add to the merged worker rows (called once, while the snapshot is built)."""

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
                row = (*fields, seen_at, "", "", "", False, None)
            elif seen_at > row[ROW_SEEN_AT]:
                row = (*fields, seen_at, *row[ROW_ENDPOINT_ID:])
            rows[worker_id] = label(row)
    views = tuple(views)
    joining = [view for view in views if type(view).join is not View.join]
    if joining:  # the instance list: its rows as WorkerRows, for the views to add to
        merged = [worker_row(row) for row in rows.values()]
        for view in joining:
            view.join(merged)
        flat = tuple(map(flat_row, merged))
    else:
        flat = tuple(rows.values())
    return Snapshot(
        states,
        flat,
        held,
        now,
        reload or ReloadStatus(),
        views,
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
            return (*row[:ROW_ENDPOINT_ID], target_id, name, row[ROW_GROUP_ID], True, row[-1])

        return label_endpoint
    endpoint_id = None if target.endpoint_id is None else str(target.endpoint_id)
    endpoint_name = target.endpoint_name

    def label_group(row: FlatRow) -> FlatRow:
        if not row[ROW_FROM_ENDPOINT] and endpoint_id is not None and not row[ROW_ENDPOINT_ID]:
            return (*row[:ROW_ENDPOINT_ID], endpoint_id, endpoint_name, target_id, *row[-2:])
        return (*row[:ROW_GROUP_ID], target_id, *row[-2:])

    return label_group


class SnapshotCollector:
    """A prometheus-client collector over one immutable Snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self.worker_families()
        yield from self.other_families()

    def worker_families(self) -> Iterator[Metric]:
        rows = self._snapshot.workers
        for metric, help_text in WORKER_FAMILIES:
            family = GaugeMetricFamily(f"vastai_worker_{metric}", help_text, labels=WORKER_LABELS)
            for row in rows:
                value = row.worker.value(metric)
                if value is not None:
                    family.add_metric(row.labels(), value)
            yield family
        status = GaugeMetricFamily(
            "vastai_worker_status", STATUS_HELP, labels=(*WORKER_LABELS, "status")
        )
        for row in rows:
            if row.worker.status is not None:
                status.add_metric((*row.labels(), row.worker.status), 1)
        yield status
        deployment = GaugeMetricFamily(
            "vastai_worker_deployment_info",
            DEPLOYMENT_HELP,
            labels=(*WORKER_LABELS, "deployment_version_id"),
        )
        for row in rows:
            if row.worker.deployment is not None:
                deployment.add_metric((*row.labels(), row.worker.deployment), 1)
        yield deployment
        yield from self._instance_families(rows)

    def _instance_families(self, rows: tuple[WorkerRow, ...]) -> Iterator[Metric]:
        """Price, bill, GPU and hardware of the workers whose instance the list shows."""
        families = {
            metric: GaugeMetricFamily(f"vastai_worker_{metric}", help_text, labels=WORKER_LABELS)
            for metric, help_text in INSTANCE_FAMILIES
        }
        billed = GaugeMetricFamily(
            "vastai_worker_billed_dollars_per_hour", BILLED_HELP, labels=WORKER_LABELS
        )
        status = GaugeMetricFamily(
            "vastai_worker_instance_status",
            INSTANCE_STATUS_HELP,
            labels=(*WORKER_LABELS, "actual_status"),
        )
        info = GaugeMetricFamily(
            "vastai_worker_instance_info",
            INSTANCE_HELP,
            labels=(*WORKER_LABELS, *INSTANCE_LABEL_FIELDS),
        )
        for row in rows:
            instance = row.instance
            if instance is None:
                continue
            labels = row.labels()
            for metric, value in instance.values.items():
                families[metric].add_metric(labels, value)
            bill = billed_dollars_per_hour(row.worker.status, instance)
            if bill is not None:
                billed.add_metric(labels, bill)
            if instance.actual_status:
                status.add_metric((*labels, instance.actual_status), 1)
            hardware = (instance.gpu_name, instance.num_gpus, instance.machine_id)
            info.add_metric((*labels, *hardware, instance.geolocation), 1)
        yield from families.values()
        yield from (billed, status, info)

    def other_families(self) -> Iterator[Metric]:
        """Target families and build info: few series, rendered by prometheus-client itself."""
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
