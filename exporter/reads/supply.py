"""Supply: how many offers of Vast's marketplace match each polled worker group's search, and
at what price: can the autoscaler recruit a worker now?

A round reads the worker groups' records (`GET /api/v0/workergroups/`, the listing's path, for
their `search_query`; their `api_key` is never kept), then searches once per distinct search of
the groups this replica polls: `POST /api/v0/bundles/` (vast-ai/docs search_offers.yaml; vast-cli
vastai/api/offers.py search_offers) with the body vast-cli would send (exporter/offer_query.py),
cheapest first, `supply.max_offers` at most. Searches are 6 s apart (search_offers.yaml
publishes 10 requests a minute per IP), across rounds too, and a 429 holds the path (the
client's pacing) and backs the read off. Each search's result shows as soon as it lands; a
round needing longer than `supply.interval` runs back to back with the next, said once in the
log. Of an offer only `dph_total` ($/h for the whole offer) and `num_gpus` are read; host,
machine, address and location are never kept.

The polled groups are the worker-group targets of this shard, and the groups of its endpoint
targets that are no target themselves (their workers are polled through the endpoint).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prometheus_client.core import GaugeMetricFamily, Metric

from ..clock import loop_time
from ..fields import OFFER_FIELDS, parse_number
from ..metrics import View
from ..offer_query import QueryError, offer_search, read_search_query, search_key
from ..pacing import ApiPath
from ..parsing import PollError, error_message, parse_results, parse_worker_id
from ..settings import BOOL, DURATION, POSITIVE_INT, Minimum, setting
from ..targets import Kind, Target
from .base import AccountRead, ReadContext
from .listing import LISTING_GROUP_PATHS

log = logging.getLogger("exporter.reads.supply")

BUNDLES = ApiPath(
    "/api/v0/bundles/",
    6.0,
    "search_offers.yaml (x-rate-limit: 10 requests a minute per IP)",
    method="POST",
)
SEARCHED = "cached from the last offer search of its query"
GROUP_LABELS = ("worker_group_id", "endpoint_id", "endpoint_name")


@dataclass(frozen=True)
class SupplySettings:
    """Offers of the marketplace matching each polled worker group's search."""

    enabled: bool = setting(False, BOOL, "Search the offers matching each polled worker group")
    interval: float = setting(
        300.0,
        DURATION,
        "A round of searches starts this often, or when the previous one ends if later",
        Minimum(60.0, "must be at least 1m (Vast allows 10 searches a minute)"),
    )
    max_offers: int = setting(100, POSITIVE_INT, "Offers asked per search, cheapest first")


@dataclass(frozen=True, slots=True)
class Offers:
    """What one search found: its offers, their GPUs, and their prices ($/h per offer)."""

    count: int
    gpus: float
    min_price: float | None
    median_price: float | None


@dataclass(frozen=True, slots=True)
class GroupSearch:
    """A worker group's record, reduced to its search: the body to send, or why there is
    none (`error`: the query cannot be read; both None: the group has no query)."""

    endpoint_id: int | None
    body: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedGroup:
    """A polled group in this round: its labels, and its search's key (None: invalid query)."""

    labels: tuple[str, str, str]
    key: str | None


@dataclass(frozen=True)
class Round:
    """A finished round: the groups it covered and what it cost."""

    groups: tuple[PlannedGroup, ...]
    searches: int
    seconds: float


def parse_offers(payload: Any) -> Offers:
    """`{"offers": [...]}` reduced to counts and prices; nothing else of an offer is kept.
    search_offers.yaml's example has one offer object under `offers`: read as a list of one."""
    if not isinstance(payload, dict):
        raise PollError("invalid_response", "expected an object with offers")
    message = error_message(payload)
    if message is not None:
        raise PollError("api_error", message)
    offers = payload.get("offers")
    if isinstance(offers, dict):
        offers = [offers]
    if not isinstance(offers, list) or not all(isinstance(item, dict) for item in offers):
        raise PollError("invalid_response", "expected a list of offers under 'offers'")
    prices = [p for p in (parse_number(o.get("dph_total")) for o in offers) if p is not None]
    gpus = sum(n for n in (parse_number(o.get("num_gpus")) for o in offers) if n is not None)
    return Offers(
        len(offers),
        gpus,
        min(prices) if prices else None,
        statistics.median(prices) if prices else None,
    )


def group_searches(limit: int) -> Callable[[Any], dict[int, GroupSearch]]:
    """A parser of `/api/v0/workergroups/` that keeps each group's endpoint and search, and
    nothing else of the record (its api_key least of all)."""

    def parse(payload: Any) -> dict[int, GroupSearch]:
        found = {}
        for item in parse_results(payload, "results"):
            group_id = parse_worker_id(item.get("id"))
            if group_id is None:
                continue
            endpoint = parse_worker_id(item.get("endpoint_id"))
            endpoint_id = None if endpoint is None else int(endpoint)
            try:
                query = read_search_query(item.get("search_query"))
            except QueryError as exc:
                found[int(group_id)] = GroupSearch(endpoint_id, None, str(exc))
                continue
            body = None if query is None else offer_search(query, limit)
            found[int(group_id)] = GroupSearch(endpoint_id, body)
        return found

    return parse


class SupplyRead(AccountRead):
    """Offer searches for the polled worker groups (supply.*); a failed search fails this read
    alone and keeps what earlier searches found until polling.stale_after."""

    kind = Kind.SUPPLY
    section = "supply"
    settings_type = SupplySettings
    paths = (BUNDLES,)  # and the listing's group path, declared by ListingRead
    demo: ClassVar[Mapping[str, Any]] = {"enabled": True, "interval": 60.0}
    awaited = False  # a round of N searches takes (N - 1) x 6 s: readiness does not wait

    def __init__(self, context: ReadContext) -> None:
        super().__init__(context)
        self._first_round_waited = False
        self._plan: tuple[PlannedGroup, ...] = ()
        self._planned_at: float | None = None
        self._results: dict[str, tuple[Offers, float]] = {}  # search key -> (offers, loop_time)
        self._last: Round | None = None
        self._reported: dict[int, str] = {}  # group -> the query error logged for it
        self._back_to_back = False

    @classmethod
    def describe(cls, settings: SupplySettings) -> str:
        return f"on, every {settings.interval:g}s, {settings.max_offers} offers a search"

    async def read(self) -> Round:
        """The groups' searches, then one search per distinct body, each result kept as it
        lands."""
        if not self._first_round_waited:
            await self.context.first_poll_round()  # discovered groups are known after it
            self._first_round_waited = True
        started = loop_time()
        client = self.context.client
        parse = group_searches(self.settings().max_offers)
        records = await client.first_that_exists(
            LISTING_GROUP_PATHS, lambda path: client.get(path, parse)
        )
        plan, bodies = self._make_plan(records)
        self._plan, self._planned_at = plan, loop_time()
        self._note_duration(len(bodies))
        for key, body in bodies.items():
            try:
                found = await client.post(BUNDLES.path, parse_offers, body)
            except PollError as exc:
                raise _as_auth(exc) from None
            self._results[key] = (found, loop_time())
        return Round(plan, len(bodies), loop_time() - started)

    def apply(self, result: Round) -> None:
        """Forget the searches no polled group asks any more."""
        self._last = result
        wanted = {group.key for group in result.groups}
        self._results = {key: entry for key, entry in self._results.items() if key in wanted}

    def clear(self) -> None:
        self._plan, self._planned_at, self._results, self._last = (), None, {}, None
        self._reported = {}

    def view(self, fresh: bool) -> View | None:
        """Each planned group with its search's last result; while the read fails, results
        older than polling.stale_after are dropped (the first round shows searches as they
        land)."""
        stale_after = self.context.config.polling.stale_after
        now = loop_time()
        if self._planned_at is None or not (fresh or now - self._planned_at <= stale_after):
            return None
        results = {
            key: offers
            for key, (offers, at) in self._results.items()
            if fresh or now - at <= stale_after
        }
        groups = tuple(
            (group.labels, group.key is not None, results.get(group.key or ""))
            for group in self._plan
        )
        return SupplyView(groups, self._last)

    # --- planning ---------------------------------------------------------------------------

    def _make_plan(
        self, records: dict[int, GroupSearch]
    ) -> tuple[tuple[PlannedGroup, ...], dict[str, dict[str, Any]]]:
        """The polled groups with their search keys, and each distinct search once."""
        planned, bodies = [], {}
        # Newest groups (the highest ids) first: a group just created is the likeliest to have a
        # search nothing matches, and the one its operator is watching.
        for group_id, labels in sorted(self._polled_groups(records).items(), reverse=True):
            search = records[group_id]
            self._report(group_id, search.error)
            if search.error is not None:
                planned.append(PlannedGroup(labels, None))
            elif search.body is not None:
                key = search_key(search.body)
                bodies.setdefault(key, search.body)
                planned.append(PlannedGroup(labels, key))
        return tuple(planned), bodies

    def _polled_groups(self, records: dict[int, GroupSearch]) -> dict[int, tuple[str, str, str]]:
        """Labels of the groups this replica polls that the listing shows: its worker-group
        targets, and the groups of its endpoint targets that are no target of any shard."""
        owns = self.context.shard.owns
        names = self.context.endpoint_names
        targets = self.context.targets
        group_targets = {t.id: t for t in targets if t.kind == Kind.WORKER_GROUP}
        endpoints = {
            t.id: t for t in targets if t.kind == Kind.ENDPOINT and owns(Kind.ENDPOINT, t.id)
        }
        polled = {}
        for group_id, search in records.items():
            target = group_targets.get(group_id)
            if target is not None:
                if owns(Kind.WORKER_GROUP, group_id):
                    polled[group_id] = _group_labels(group_id, target, search, names)
            elif search.endpoint_id in endpoints:
                endpoint = endpoints[search.endpoint_id]
                polled[group_id] = (str(group_id), str(endpoint.id), endpoint.name)
        return polled

    def _report(self, group_id: int, error: str | None) -> None:
        """One log line when a group's query becomes unreadable (or changes how)."""
        if error is None:
            self._reported.pop(group_id, None)
            return
        if self._reported.get(group_id) == error:
            return
        self._reported[group_id] = error
        log.warning(
            "worker group's search_query cannot be read as Vast's CLI reads it; its supply "
            "is not searched (vastai_worker_group_supply_query_valid 0)",
            extra={"fields": {"worker_group_id": group_id, "error": error}},
        )

    def _note_duration(self, searches: int) -> None:
        """Say once when a round's searches, 6 s apart, take longer than supply.interval."""
        interval = self.settings().interval
        needed = max(0, searches - 1) * BUNDLES.spacing
        if needed <= interval:
            self._back_to_back = False
            return
        if not self._back_to_back:
            self._back_to_back = True
            log.warning(
                "supply: a round of searches takes longer than supply.interval at 10 searches "
                "a minute; rounds run back to back",
                extra={
                    "fields": {
                        "searches": searches,
                        "needs": f"{needed:g}s",
                        "interval": f"{interval:g}s",
                    }
                },
            )


def _as_auth(error: PollError) -> PollError:
    """search_offers.yaml answers a missing or unknown key with HTTP 404 "Invalid user key":
    an auth failure, not a missing path."""
    return PollError("auth", error.message) if error.reason == "not_found" else error


def _group_labels(
    group_id: int, target: Target, search: GroupSearch, names: Mapping[int, str]
) -> tuple[str, str, str]:
    """As vastai_worker_group_info labels the group: its target's endpoint, else the
    listing's."""
    endpoint_id = target.endpoint_id if target.endpoint_id is not None else search.endpoint_id
    if endpoint_id is None:
        return (str(group_id), "", "")
    return (str(group_id), str(endpoint_id), target.endpoint_name or names.get(endpoint_id, ""))


@dataclass(frozen=True)
class SupplyView(View):
    """Each planned group's labels, whether its query reads, and its search's offers (None
    until searched)."""

    groups: tuple[tuple[tuple[str, str, str], bool, Offers | None], ...]
    last_round: Round | None = field(default=None)

    def families(self) -> Iterator[Metric]:
        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(
                f"vastai_worker_group_{name}", f"{text}; {SEARCHED}.", labels=GROUP_LABELS
            )

        offers = gauge(
            "offers",
            "Offers matching the worker group's search_query (dph_total ascending; equal to "
            "supply.max_offers means at least that many)",
        )
        gpus, cheapest, median = (gauge(field.metric, field.help) for field in OFFER_FIELDS)
        valid = gauge(
            "supply_query_valid",
            "1 if the worker group's search_query reads as Vast's CLI reads it, else 0 (then "
            "it is not searched)",
        )
        for labels, readable, found in self.groups:
            valid.add_metric(labels, 1 if readable else 0)
            if found is None:
                continue
            offers.add_metric(labels, found.count)
            gpus.add_metric(labels, found.gpus)
            if found.min_price is not None and found.median_price is not None:
                cheapest.add_metric(labels, found.min_price)
                median.add_metric(labels, found.median_price)
        yield from (offers, gpus, cheapest, median, valid)
        if self.last_round is not None:
            yield GaugeMetricFamily(
                "vastai_supply_read_searches",
                "Offer searches of the last supply round (one per distinct search_query)",
                value=self.last_round.searches,
            )
            yield GaugeMetricFamily(
                "vastai_supply_read_duration_seconds",
                "Duration of the last supply round in seconds, its searches 6 s apart",
                value=self.last_round.seconds,
            )
