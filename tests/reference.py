"""The reference renderer: the whole exposition through prometheus-client's own types.

Production never runs this for the per-worker families (exporter/exposition.py writes them
itself, a hundred times faster); tests render the same snapshot both ways and compare the bytes.
It reads the same declarations as the fast renderer: WORKER_FAMILIES, STATUS_FAMILY and
DEPLOYMENT_FAMILY for the workers' own series, each view's WorkerFamily specs and values
(View.worker_families) for the reads', and production's ClientRenderedFamilies for the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.metrics import (
    DEPLOYMENT_FAMILY,
    STATUS_FAMILY,
    WORKER_FAMILIES,
    ClientRenderedFamilies,
    Snapshot,
    WorkerRow,
)
from exporter.worker_families import WORKER_LABELS, WorkerFamily, WorkerSeries


class SnapshotCollector:
    """A prometheus-client collector over one immutable Snapshot: every family."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self.worker_families()
        yield from ClientRenderedFamilies(self._snapshot).collect()

    def worker_families(self) -> Iterator[Metric]:
        rows = self._snapshot.workers
        for metric, help_text in WORKER_FAMILIES:
            family = GaugeMetricFamily(f"vastai_worker_{metric}", help_text, labels=WORKER_LABELS)
            for row in rows:
                value = row.worker.value(metric)
                if value is not None:
                    family.add_metric(row.labels(), value)
            yield family
        yield self._row_family(STATUS_FAMILY, rows, lambda row: row.worker.status)
        yield self._row_family(DEPLOYMENT_FAMILY, rows, lambda row: row.worker.deployment)
        statuses = {row.worker.id: row.worker.status for row in rows}
        for view in self._snapshot.views:
            for series in view.worker_families(statuses):
                yield self._series_family(series, rows)

    @staticmethod
    def _row_family(family: WorkerFamily, rows: tuple[WorkerRow, ...], label) -> Metric:
        """A family of one extra label taken from each row (None: no series), value 1."""
        metric = gauge(family)
        for row in rows:
            if label(row) is not None:
                metric.add_metric((*row.labels(), label(row)), 1)
        return metric

    @staticmethod
    def _series_family(series: WorkerSeries, rows: tuple[WorkerRow, ...]) -> Metric:
        """A view's values joined to the rows by worker id, in the rows' order."""
        family = series.family
        metric = gauge(family)
        for row in rows:
            found = series.values.get(row.worker.id)
            if found is None:
                continue
            if not family.labels:
                metric.add_metric(row.labels(), found)
                continue
            for values, value in found:
                metric.add_metric((*row.labels(), *values), value)
        return metric


def gauge(family: WorkerFamily) -> GaugeMetricFamily:
    return GaugeMetricFamily(family.name, family.help, labels=(*WORKER_LABELS, *family.labels))


def reference(snapshot: Snapshot, openmetrics: bool) -> bytes:
    """The snapshot's exposition as prometheus-client writes it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return (generate_openmetrics if openmetrics else generate_text)(registry)
