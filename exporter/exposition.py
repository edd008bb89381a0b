"""Rendering a snapshot to the Prometheus text format and OpenMetrics, fast.

The exporter's own `process_*` and `python_*` families are the exception: a dozen samples,
collected and rendered per scrape (about 0.2 ms) and appended to the cached bytes, after which
OpenMetrics' `# EOF` comes. The cached gzip stream is left open (sync-flushed), so the scrape
compresses only those few lines and the response is still one gzip member.

prometheus-client's `generate_latest` builds a Sample and escapes every label of every sample:
about 1 s for 10,000 workers. Worker series share one label set per worker across eleven
families, so here each worker's labels are escaped once and every line is one f-string. The
output is byte-for-byte what prometheus-client produces from `SnapshotCollector` (a test holds
the two together); the few target and build-info families still go through prometheus-client.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as generate_text
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from .billing import BillingView
from .clock import loop_time
from .metrics import (
    BILLED_HELP,
    DEPLOYMENT_HELP,
    INSTANCE_FAMILIES,
    INSTANCE_HELP,
    INSTANCE_STATUS_HELP,
    STATUS_HELP,
    WORKER_FAMILIES,
    AccountView,
    ReloadStatus,
    Snapshot,
    SnapshotCollector,
    TargetState,
    WorkerRow,
    build_snapshot,
)
from .parsing import Instance
from .pricing import billed_dollars_per_hour

log = logging.getLogger(__name__)

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 6
EOF = b"# EOF\n"


@dataclass(frozen=True)
class Body:
    """One format's rendered bytes (OpenMetrics without its `# EOF`), and their gzip stream
    left open: `gzip_head` is complete up to a sync flush, `compressor` can carry on from it."""

    raw: bytes
    gzip_head: bytes
    compressor: Any  # zlib.Compress; copied, never used itself, so it serves every scrape

    @classmethod
    def of(cls, raw: bytes) -> Body:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        head = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return cls(raw, head, compressor)

    def chunks(self, tail: bytes, use_gzip: bool) -> tuple[bytes, bytes]:
        """The cached bytes followed by `tail`, as two chunks to send one after the other."""
        if not use_gzip:
            return self.raw, tail
        compressor = self.compressor.copy()
        return self.gzip_head, compressor.compress(tail) + compressor.flush()


def no_tail(openmetrics: bool) -> bytes:
    return EOF if openmetrics else b""


@dataclass(frozen=True)
class Exposition:
    """One snapshot rendered in both formats, each also gzip-compressed once."""

    text: Body
    openmetrics: Body

    def select(
        self,
        accept: str,
        accept_encoding: str,
        tail: Callable[[bool], bytes] = no_tail,
    ) -> tuple[tuple[bytes, bytes], str, str | None]:
        """(body chunks, Content-Type, Content-Encoding) for a request's Accept headers.

        `tail(openmetrics)` renders what follows the cached families; in OpenMetrics it must
        end with `# EOF`.
        """
        use_openmetrics = wants_openmetrics(accept)
        use_gzip = "gzip" in accept_encoding.lower()
        body = self.openmetrics if use_openmetrics else self.text
        chunks = body.chunks(tail(use_openmetrics), use_gzip)
        content_type = OPENMETRICS_TYPE if use_openmetrics else TEXT_TYPE
        return chunks, content_type, "gzip" if use_gzip else None


class RuntimeFamilies:
    """`process_*` (CPU, memory, file descriptors, start time) and `python_*` (version, GC), as
    every client library exports them: collected when a scrape asks (a few reads of /proc) and
    written by `render_simple`, byte-identical to prometheus-client and a fraction of its cost."""

    def __init__(self) -> None:
        self._collectors = (
            ProcessCollector(registry=None),
            PlatformCollector(registry=None),
            GCCollector(registry=CollectorRegistry(auto_describe=False)),  # it must register
        )

    def collect(self) -> list[Metric]:
        return [family for collector in self._collectors for family in collector.collect()]

    def render(self, openmetrics: bool) -> bytes:
        """These families in one format; OpenMetrics ends with `# EOF`."""
        body = render_simple(self.collect(), openmetrics)
        return body + EOF if openmetrics else body


def render_simple(families: Iterable[Metric], openmetrics: bool) -> bytes:
    """Gauge and counter families without timestamps, exemplars or `_created` samples, as
    prometheus-client renders them (a test holds the two together)."""
    fmt = floatToGoString
    lines = []
    for family in families:
        if family.type not in ("gauge", "counter"):
            raise ValueError(f"{family.name}: {family.type} is not rendered here")
        name = family.name
        if family.type == "counter" and not openmetrics:
            name += "_total"
        lines.append(f"# HELP {name} {_help_text(family.documentation, openmetrics)}\n")
        lines.append(f"# TYPE {name} {family.type}\n")
        for sample in family.samples:
            if sample.labels:
                pairs = sorted(sample.labels.items())
                labels = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
                lines.append(f"{sample.name}{{{labels}}} {fmt(sample.value)}\n")
            else:
                lines.append(f"{sample.name} {fmt(sample.value)}\n")
    return "".join(lines).encode()


def wants_openmetrics(accept: str) -> bool:
    """Whether the Accept header asks for OpenMetrics (Prometheus asks for it first)."""
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if media != "application/openmetrics-text":
            continue
        quality = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            continue
    return False


def build_exposition(snapshot: Snapshot) -> Exposition:
    """Render and compress one snapshot; CPU-bound, meant to run in a worker thread."""
    families = _worker_families(snapshot.workers)
    text = render(snapshot, openmetrics=False, families=families)
    openmetrics = render(snapshot, openmetrics=True, families=families)
    if not openmetrics.endswith(EOF):
        raise ValueError("OpenMetrics rendering does not end with # EOF")
    return Exposition(text=Body.of(text), openmetrics=Body.of(openmetrics[: -len(EOF)]))


def render(
    snapshot: Snapshot, openmetrics: bool, families: list[tuple[str, str, str]] | None = None
) -> bytes:
    """The full exposition: worker families by the fast path, the rest by prometheus-client.

    Worker sample lines are the same in both formats (only HELP escaping differs), so
    `families` from one `_worker_families` call can serve both renders.
    """
    if families is None:
        families = _worker_families(snapshot.workers)
    parts = []
    for name, help_text, body in families:
        parts.append(_help(name, help_text, openmetrics))
        parts.append(body)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_TargetFamilies(snapshot))
    generate = generate_openmetrics if openmetrics else generate_text
    return "".join(parts).encode() + generate(registry)


class _TargetFamilies:
    def __init__(self, snapshot: Snapshot) -> None:
        self._collector = SnapshotCollector(snapshot)

    def collect(self) -> Iterator[Metric]:
        return self._collector.other_families()


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(name: str, text: str, openmetrics: bool) -> str:
    return f"# HELP {name} {_help_text(text, openmetrics)}\n# TYPE {name} gauge\n"


def _help_text(text: str, openmetrics: bool) -> str:
    return _escape(text) if openmetrics else text.replace("\\", r"\\").replace("\n", r"\n")


def _worker_families(rows: tuple[WorkerRow, ...]) -> list[tuple[str, str, str]]:
    """(name, HELP, sample lines) of every worker family, in SnapshotCollector's order.

    Labels are sorted by name, as prometheus-client writes them: each worker's two endpoint
    labels (`head`) and two worker labels (`tail`) are escaped once; other labels sort before
    (actual_status, deployment_version_id), between (status, the hardware) or after them.
    """
    heads = [
        f'endpoint_id="{_escape(row.endpoint_id)}",endpoint_name="{_escape(row.endpoint_name)}"'
        for row in rows
    ]
    tails = [
        f'worker_group_id="{_escape(row.worker_group_id)}",worker_id="{_escape(row.worker.id)}"'
        for row in rows
    ]
    labelled = list(zip(rows, heads, tails, strict=True))
    families = [
        _values_family(metric, help_text, [(row.worker.values, h, t) for row, h, t in labelled])
        for metric, help_text in WORKER_FAMILIES
    ]
    statuses = [
        f'vastai_worker_status{{{head},status="{_escape(row.worker.status)}",{tail}}} 1.0\n'
        for row, head, tail in labelled
        if row.worker.status is not None
    ]
    families.append(("vastai_worker_status", STATUS_HELP, "".join(statuses)))
    deployments = [
        f'vastai_worker_deployment_info{{deployment_version_id="{_escape(row.worker.deployment)}",'
        f"{head},{tail}}} 1.0\n"
        for row, head, tail in labelled
        if row.worker.deployment is not None
    ]
    families.append(("vastai_worker_deployment_info", DEPLOYMENT_HELP, "".join(deployments)))
    families.extend(_instance_families(labelled))
    return families


def _values_family(
    metric: str, help_text: str, rows: list[tuple[Mapping[str, float], str, str]]
) -> tuple[str, str, str]:
    """One gauge family from each row's `values[metric]`, where it has one."""
    name = f"vastai_worker_{metric}"
    lines = [
        f"{name}{{{head},{tail}}} {floatToGoString(values[metric])}\n"
        for values, head, tail in rows
        if metric in values
    ]
    return name, help_text, "".join(lines)


def _instance_families(
    labelled: list[tuple[WorkerRow, str, str]],
) -> list[tuple[str, str, str]]:
    """Instance-list families of the workers that have an instance: figures, bill, status,
    hardware."""
    joined = [(row.instance, row, h, t) for row, h, t in labelled if row.instance is not None]
    families = [
        _values_family(metric, help_text, [(i.values, h, t) for i, _, h, t in joined])
        for metric, help_text in INSTANCE_FAMILIES
    ]
    billed, statuses, infos = [], [], []
    for instance, row, head, tail in joined:
        bill = billed_dollars_per_hour(row.worker.status, instance)
        if bill is not None:
            billed.append(
                f"vastai_worker_billed_dollars_per_hour{{{head},{tail}}} {floatToGoString(bill)}\n"
            )
        if instance.actual_status:
            statuses.append(
                f'vastai_worker_instance_status{{actual_status="{_escape(instance.actual_status)}",'
                f"{head},{tail}}} 1.0\n"
            )
        hardware = (
            f'geolocation="{_escape(instance.geolocation)}",gpu_name="{_escape(instance.gpu_name)}",'
            f'machine_id="{_escape(instance.machine_id)}",num_gpus="{_escape(instance.num_gpus)}"'
        )
        infos.append(f"vastai_worker_instance_info{{{head},{hardware},{tail}}} 1.0\n")
    families.append(("vastai_worker_billed_dollars_per_hour", BILLED_HELP, "".join(billed)))
    families.append(("vastai_worker_instance_status", INSTANCE_STATUS_HELP, "".join(statuses)))
    families.append(("vastai_worker_instance_info", INSTANCE_HELP, "".join(infos)))
    return families


class MetricsCache:
    """Holds the last rendered exposition and re-renders it, off the loop, when polls change.

    A burst of poll results becomes one render: after a change the cache waits `debounce`, and
    never starts a render sooner than RENDER_GAP_FACTOR x the last render's duration after the
    previous one ended, so rendering takes at most a fifth of a core however often polls land. A
    periodic re-render also expires the workers of targets failing for `stale_after`.
    """

    RENDER_GAP_FACTOR = 4.0

    def __init__(
        self,
        states: Callable[[], Iterable[TargetState]],
        stale_after: float,
        refresh_every: float,
        debounce: float = 0.05,
    ) -> None:
        self._states = states
        self._stale_after = stale_after
        self._refresh_every = refresh_every
        self.reload = ReloadStatus(successful=True, success_timestamp=time.time())
        self.account = AccountView()
        self.instances: Callable[[], Mapping[str, Instance]] = dict
        self.instance_read: Callable[[], tuple[int, float] | None] = lambda: None
        self.billing: Callable[[], BillingView | None] = lambda: None
        self.requests: Callable[[], tuple[tuple[tuple[str, str, str], int], ...]] = tuple
        self.web_config_successful = True
        self._debounce = debounce
        self._changed = asyncio.Event()
        self._last_render_seconds = 0.0
        self._last_render_end = 0.0
        self.snapshot = build_snapshot((), stale_after, loop_time())
        self.exposition = build_exposition(self.snapshot)

    def mark_changed(self) -> None:
        self._changed.set()

    def update(self, stale_after: float, refresh_every: float, reload: ReloadStatus) -> None:
        """Settings and reload outcome from a configuration reload; re-render soon."""
        self._stale_after, self._refresh_every, self.reload = stale_after, refresh_every, reload
        self.mark_changed()

    async def refresh(self) -> None:
        """Build a snapshot now (cheap, on the loop) and render it in a worker thread."""
        started = loop_time()
        snapshot = build_snapshot(
            self._states(),
            self._stale_after,
            loop_time(),
            self.reload,
            self.account,
            self.instances(),
            self.requests(),
            self.instance_read(),
            self.billing(),
            self.web_config_successful,
        )
        loop = asyncio.get_running_loop()
        exposition = await loop.run_in_executor(None, build_exposition, snapshot)
        self.snapshot, self.exposition = snapshot, exposition
        self._last_render_end = loop_time()
        self._last_render_seconds = self._last_render_end - started

    async def run(self) -> None:
        """Re-render after each burst of poll results, and at least every refresh_every."""
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=self._refresh_every)
                # Wait out the debounce, and the rest of the gap after the previous render.
                gap = self.RENDER_GAP_FACTOR * self._last_render_seconds
                earliest = self._last_render_end + gap - loop_time()
                await asyncio.sleep(max(self._debounce, earliest))
            except TimeoutError:
                pass
            self._changed.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("rendering /metrics failed; serving the previous exposition")
