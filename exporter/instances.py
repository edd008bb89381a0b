"""The v1 instance list: each polled worker's price, GPU and memory, read page by page.

Vast allows one request a second per key on /api/v1/instances/ (show_instances.yaml,
x-rate-limit threshold 1.0) and pages of at most 25 instances, so a read asks only for the
workers this replica polls, only the columns it exports, and spaces its pages by
`instances.page_interval` (also across reads). 10,000 workers are 400 pages: almost 7 minutes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from prometheus_client.core import GaugeMetricFamily, Metric

from .clock import loop_time
from .config import Kind
from .fields import INSTANCE_COLUMNS, INSTANCE_FIELDS, INSTANCE_LABEL_FIELDS
from .metrics import View
from .parsing import Instance, InstancePage, parse_instance_page
from .pricing import billed_dollars_per_hour
from .reads import AccountRead, ReadContext
from .worker_families import WorkerFamily, WorkerSeries

# v0 (/api/v0/instances/) answers 410 "deprecated_endpoint" since mid-2026: never called.
INSTANCES_PATH = "/api/v1/instances/"
INSTANCES_PAGE_SIZE = 25  # show_instances.yaml: "Default 25, max 25"

# Ids per select_filters `in` list: 100 ids are about 1 KB of URL, well under any limit, and
# 4 pages of 25.
IDS_PER_FILTER = 100

FetchPage = Callable[[Sequence[str], str | None], Awaitable[InstancePage]]


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
    """One read of the instance list for the polled workers: every page, pages spaced."""

    def __init__(
        self,
        fetch_page: FetchPage,
        wanted_ids: Callable[[], Iterable[str]],
        store: InstanceStore,
        page_interval: float,
        first_round: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self._fetch_page = fetch_page
        self._first_round = first_round  # awaited before the first read: the workers to ask
        self._wanted_ids = wanted_ids
        self._store = store
        self.page_interval = page_interval
        self._clock = clock
        self._last_page_at: float | None = None
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
        started, pages, found = self._clock(), 0, set()
        try:
            for start in range(0, len(ids), IDS_PER_FILTER):
                chunk = ids[start : start + IDS_PER_FILTER]
                token: str | None = None
                for _ in range(len(chunk)):  # a cursor that never ends cannot loop forever
                    page = await self._next_page(chunk, token)
                    pages += 1
                    self._store.update(page.instances)
                    found.update(page.instances)
                    token = page.next_token
                    if token is None or not page.instances:
                        break
        finally:
            self.last_pages, self.last_duration = pages, self._clock() - started
        self._store.keep_only(found)
        return len(found)

    async def _next_page(self, chunk: Sequence[str], token: str | None) -> InstancePage:
        if self._last_page_at is not None:
            wait = self._last_page_at + self.page_interval - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            return await self._fetch_page(chunk, token)
        finally:
            self._last_page_at = self._clock()


class InstancesRead(AccountRead):
    """The v1 instance list for the workers this replica polls (instances.*)."""

    kind = Kind.INSTANCES
    section = "instances"

    def __init__(self, context: ReadContext) -> None:
        super().__init__(context)
        config = context.config
        self.store = InstanceStore(config.polling.stale_after)
        self.reader = InstanceReader(
            self._page,
            context.polled_worker_ids,
            self.store,
            config.instances.page_interval,
            context.first_poll_round,
        )

    def configure(self) -> None:
        config = self.context.config
        self.store.stale_after = config.polling.stale_after
        self.reader.page_interval = config.instances.page_interval

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

    async def _page(self, instance_ids: Sequence[str], after_token: str | None) -> InstancePage:
        """One page (at most 25) of the instances among `instance_ids`, only the columns the
        exporter exports (show_instances.yaml: select_filters, select_cols, keyset paging)."""
        params = {
            "limit": str(INSTANCES_PAGE_SIZE),
            "select_cols": json.dumps(list(INSTANCE_COLUMNS), separators=(",", ":")),
            "select_filters": json.dumps(
                {"id": {"in": [int(i) for i in instance_ids]}}, separators=(",", ":")
            ),
        }
        if after_token is not None:
            params["after_token"] = after_token
        return await self.context.client.get(INSTANCES_PATH, parse_instance_page, params)


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
