"""Per-worker gauge families: one declaration that both renderers read.

A read that adds series keyed by worker (the instance list's price and hardware, a pending price
increase, ...) declares each family once as a `WorkerFamily` (name, HELP, the label names it adds)
and its View yields, per snapshot, a `WorkerSeries` for each: its values by worker id. The worker
labels (endpoint_id, endpoint_name, worker_group_id, worker_id) are never the read's business:
both renderers join the values to the merged worker rows by worker id, in the rows' order, and
take the labels from the rows. The fast renderer (exposition.py) places a family's labels by
`WorkerFamily.label_order` (sorted by name, as prometheus-client writes them, worked out once per
family) around each worker's labels, escaped once per render; the reference collector
(tests/reference.py) hands the same spec to prometheus-client, and a test holds the two byte for
byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

WORKER_LABELS = ("endpoint_id", "endpoint_name", "worker_group_id", "worker_id")
# The fast renderer escapes each worker's labels once per render as two pieces, the endpoint's
# (`head`, shared by its workers) and the worker's (`tail`); a family whose label names sort
# between the two of a piece gets them one by one instead (slower, never needed so far).
HEAD = ("endpoint_id", "endpoint_name")
TAIL = ("worker_group_id", "worker_id")

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# One series of a labelled family: its extra label values (in WorkerFamily.labels' order), value.
Sample = tuple[tuple[str, ...], float]


@dataclass(frozen=True)
class WorkerFamily:
    """A gauge family with series per worker: the worker labels, then `labels`, the names of
    the label values each sample adds (in the order a Sample gives them; rendered sorted)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not METRIC_NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a metric name")
        for label in self.labels:
            if not LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"{self.name}: {label!r} is not a label name")
            if label in WORKER_LABELS:
                raise ValueError(f"{self.name}: {label!r} is a worker label, joined from the rows")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{self.name}: a label name is repeated")

    @cached_property
    def label_order(self) -> LabelOrder:
        """Where `labels` go among the worker labels when sorted by name, as prometheus-client
        writes them; worked out once per family."""
        return LabelOrder.of(self.labels)


@dataclass(frozen=True)
class LabelOrder:
    """A family's extra labels by where they sort among the worker labels: before `endpoint_id`,
    between `endpoint_name` and `worker_group_id`, after `worker_id`, each as (name, index in
    the family's labels), sorted; `split`: some label sorts inside HEAD or TAIL instead."""

    before: tuple[tuple[str, int], ...]
    between: tuple[tuple[str, int], ...]
    after: tuple[tuple[str, int], ...]
    split: bool

    @classmethod
    def of(cls, labels: tuple[str, ...]) -> LabelOrder:
        named = sorted((label, index) for index, label in enumerate(labels))
        before = tuple(pair for pair in named if pair[0] < HEAD[0])
        between = tuple(pair for pair in named if HEAD[1] < pair[0] < TAIL[0])
        after = tuple(pair for pair in named if pair[0] > TAIL[1])
        return cls(before, between, after, len(before + between + after) < len(labels))


# A family's values by worker id: for a family without extra labels, the value; for one with,
# the worker's samples (one or more).
WorkerValues = Mapping[str, float] | Mapping[str, Sequence[Sample]]


@dataclass(frozen=True, slots=True)
class WorkerSeries:
    """What a View has of one WorkerFamily in a snapshot. Values of workers the snapshot does
    not hold (not polled by this replica, or gone) are not exported."""

    family: WorkerFamily
    values: WorkerValues
