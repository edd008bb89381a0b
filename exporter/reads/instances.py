"""The v1 instance list: each polled worker's price, GPU and memory, read page by page.

Vast allows one request a second per key on /api/v1/instances/ (show_instances.yaml,
x-rate-limit threshold 1.0) and pages of at most 25 instances, so a read asks only for the
workers this replica polls, only the columns it exports, and its pages are spaced by
`instances.page_interval` (the client's pacing of the path, across reads too). 10,000 workers
are 400 pages: almost 7 minutes.
"""

from __future__ import annotations

import json
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar

from prometheus_client.core import GaugeMetricFamily, Metric

from ..clock import loop_time
from ..fields import INSTANCE_COLUMNS, INSTANCE_FIELDS, INSTANCE_LABEL_FIELDS
from ..metrics import View
from ..pacing import ApiPath
from ..parsing import Instance, parse_instance_page
from ..pricing import billed_dollars_per_hour
from ..settings import BOOL, DURATION, ONCE_A_SECOND, Minimum, setting
from ..targets import Kind
from ..worker_families import WorkerFamily, WorkerSeries
from .base import AccountRead, ReadContext, pages

# v0 (/api/v0/instances/) answers 410 "deprecated_endpoint" since mid-2026: never called.
INSTANCES = ApiPath("/api/v1/instances/", 1.0, "show_instances.yaml (x-rate-limit 1.0)")
INSTANCES_PATH = INSTANCES.path
INSTANCES_PAGE_SIZE = 25  # show_instances.yaml: "Default 25, max 25"

# Ids per select_filters `in` list: 100 ids are about 1 KB of URL, well under any limit, and
# 4 pages of 25.
IDS_PER_FILTER = 100


@dataclass(frozen=True)
class InstancesSettings:
    """The account's v1 instance list: each worker's price, GPU and memory."""

    enabled: bool = setting(False, BOOL, "Read the v1 instance list for the polled workers")
    interval: float = setting(
        60.0,
        DURATION,
        "A read starts this often, or when the previous one ends if later",
        ONCE_A_SECOND,
    )
    page_interval: float = setting(
        1.0,
        DURATION,
        "Pages of a read at least this far apart",
        Minimum(1.0, "must be at least 1s (Vast allows one request a second on the instance list)"),
    )


FetchPages = Callable[[Sequence[str]], AsyncIterator[dict[str, Instance]]]


class InstanceStore:
    """The last known instance of each worker id and when it was read (loop_time()).

    A page read updates its instances; a complete read also forgets those it no longer lists.
    An instance not read again for `stale_after` drops out, as a failing target's workers do.
    """

    def __init__(self, stale_after: float, clock: Callable[[], float] = loop_time) -> None:
        self.stale_after = stale_after
        self._clock = clock
        self._entries: dict[str, tuple[Instance, float]] = {}

    def update(self, instances: dict[str, Instance]) -> None:
        now = self._clock()
        self._entries.update((key, (instance, now)) for key, instance in instances.items())

    def keep_only(self, ids: Iterable[str]) -> None:
        wanted = set(ids)
        self._entries = {key: entry for key, entry in self._entries.items() if key in wanted}

    def clear(self) -> None:
        self._entries = {}

    def current(self) -> dict[str, Instance]:
        """Instances read within stale_after; older ones are forgotten."""
        oldest = self._clock() - self.stale_after
        self._entries = {key: entry for key, entry in self._entries.items() if entry[1] >= oldest}
        return {key: instance for key, (instance, _) in self._entries.items()}


class InstanceReader:
    """One read of the instance list for the polled workers: every page of every chunk of ids."""

    def __init__(
        self,
        fetch_pages: FetchPages,
        wanted_ids: Callable[[], Iterable[str]],
        store: InstanceStore,
        first_round: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self._fetch_pages = fetch_pages
        self._first_round = first_round  # awaited before the first read: the workers to ask
        self._wanted_ids = wanted_ids
        self._store = store
        self._clock = clock
        self.last_pages: int | None = None  # pages of the last read, finished or not
        self.last_duration: float | None = None

    async def read(self) -> int:
        """Read every page for the wanted ids; return how many instances were found.

        A failed page raises its PollError and ends the read: the pages read before it are
        already in the store, the other instances keep their last values until stale_after.
        """
        if self._first_round is not None:
            await self._first_round()
            self._first_round = None
        ids = sorted(set(self._wanted_ids()), key=int)
        started, pages_read, found = self._clock(), 0, set()
        try:
            for start in range(0, len(ids), IDS_PER_FILTER):
                async for instances in self._fetch_pages(ids[start : start + IDS_PER_FILTER]):
                    pages_read += 1
                    self._store.update(instances)
                    found.update(instances)
        finally:
            self.last_pages, self.last_duration = pages_read, self._clock() - started
        self._store.keep_only(found)
        return len(found)


class InstancesRead(AccountRead):
    """The v1 instance list for the workers this replica polls (instances.*)."""

    kind = Kind.INSTANCES
    section = "instances"
    settings_type = InstancesSettings
    paths = (INSTANCES,)
    demo: ClassVar[Mapping[str, Any]] = {"enabled": True, "interval": 10.0}

    def __init__(self, context: ReadContext) -> None:
        super().__init__(context)
        self.store = InstanceStore(context.config.polling.stale_after)
        self.reader = InstanceReader(
            self._pages, context.polled_worker_ids, self.store, context.first_poll_round
        )

    @classmethod
    def describe(cls, settings: InstancesSettings) -> str:
        return f"on, every {settings.interval:g}s, pages {settings.page_interval:g}s apart"

    def configure(self) -> None:
        config = self.context.config
        self.store.stale_after = config.polling.stale_after
        self.context.client.pacing.set_spacing(INSTANCES_PATH, config.instances.page_interval)

    async def read(self) -> int:
        return await self.reader.read()  # each page enters the store as it is read

    def clear(self) -> None:
        self.store.clear()

    def view(self, fresh: bool) -> View | None:
        """Each instance's own age decides (InstanceStore), not the read's."""
        reader = self.reader
        read = None
        if reader.last_pages is not None and reader.last_duration is not None:
            read = (reader.last_pages, reader.last_duration)
        return InstancesView(self.store.current(), read)

    def _pages(self, instance_ids: Sequence[str]) -> AsyncIterator[dict[str, Instance]]:
        """The pages (at most 25 instances each) of the instances among `instance_ids`, only
        the columns the exporter exports (show_instances.yaml: select_filters, select_cols,
        keyset paging)."""
        params = {
            "limit": str(INSTANCES_PAGE_SIZE),
            "select_cols": json.dumps(list(INSTANCE_COLUMNS), separators=(",", ":")),
            "select_filters": json.dumps(
                {"id": {"in": [int(i) for i in instance_ids]}}, separators=(",", ":")
            ),
        }
        # A chunk of n ids is n pages at most, however the cursor behaves.
        client = self.context.client
        return pages(client, INSTANCES_PATH, parse_instance_page, params, len(instance_ids), _empty)


def _empty(instances: dict[str, Instance]) -> bool:
    return not instances


LISTED_INSTANCES = "cached from the last instance list"
# The instance list's families per worker, in exposition order: one per INSTANCE_FIELDS entry,
# the bill, the instance's status, its hardware (INSTANCE_LABEL_FIELDS as labels).
INSTANCE_VALUE_FAMILIES = tuple(
    WorkerFamily(f"vastai_worker_{field.metric}", f"{field.help}; {LISTED_INSTANCES}.")
    for field in INSTANCE_FIELDS
)
BILLED_FAMILY = WorkerFamily(
    "vastai_worker_billed_dollars_per_hour",
    "What Vast bills for the worker now in dollars per hour: dph_total while its state bills "
    "GPU compute (ready, loading), storage_total_cost while creating or inactive, 0 where not "
    f"billed; {LISTED_INSTANCES}.",
)
INSTANCE_STATUS_FAMILY = WorkerFamily(
    "vastai_worker_instance_status",
    "Status of the worker's instance (lower-cased actual_status) as a label; value 1; "
    f"{LISTED_INSTANCES}.",
    ("actual_status",),
)
INSTANCE_INFO_FAMILY = WorkerFamily(
    "vastai_worker_instance_info",
    f"Hardware of the worker's instance, as labels; value 1; {LISTED_INSTANCES}.",
    INSTANCE_LABEL_FIELDS,
)
_hardware = attrgetter(*INSTANCE_LABEL_FIELDS)  # an Instance's INSTANCE_LABEL_FIELDS, a tuple
assert len(INSTANCE_LABEL_FIELDS) > 1, "attrgetter of one name returns the value, not a tuple"


@dataclass(frozen=True)
class InstancesView(View):
    """Instances by worker id, the series per worker made from them; the last read's pages and
    time."""

    instances: Mapping[str, Instance]
    last_read: tuple[int, float] | None = None  # pages, seconds

    def worker_families(self, statuses: Mapping[str, str | None]) -> Iterator[WorkerSeries]:
        """Price and figures, bill (by the worker's status), status and hardware per worker."""
        instances = self.instances
        for field, family in zip(INSTANCE_FIELDS, INSTANCE_VALUE_FAMILIES, strict=True):
            metric = field.metric
            yield WorkerSeries(
                family,
                {
                    k: value
                    for k, i in instances.items()
                    if (value := i.values.get(metric)) is not None
                },
            )
        yield WorkerSeries(
            BILLED_FAMILY,
            {
                k: bill
                for k, i in instances.items()
                if (bill := billed_dollars_per_hour(statuses.get(k), i)) is not None
            },
        )
        yield WorkerSeries(
            INSTANCE_STATUS_FAMILY,
            {key: (((i.actual_status,), 1.0),) for key, i in instances.items() if i.actual_status},
        )
        yield WorkerSeries(
            INSTANCE_INFO_FAMILY, {key: ((_hardware(i), 1.0),) for key, i in instances.items()}
        )

    def families(self) -> Iterator[Metric]:
        if self.last_read is None:
            return
        pages, seconds = self.last_read
        yield GaugeMetricFamily(
            "vastai_instances_read_pages",
            "Pages of the last read of the instance list (25 instances a page at most)",
            value=pages,
        )
        yield GaugeMetricFamily(
            "vastai_instances_read_duration_seconds",
            "Duration of the last read of the instance list in seconds, pages spaced by "
            "instances.page_interval included",
            value=seconds,
        )
