"""Account discovery: which endpoints and worker groups to poll, read from the account listing.

The listing is read once per `discovery.interval` (never sooner: Vast rate-limits these calls
per key) and backs off on 429. It is reported like a target (`kind="listing"`). A failed read
keeps the last known set of targets; a successful one replaces it, so deleted endpoints lose
their series and new ones are polled at once.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric

from .clock import loop_time
from .config import DiscoverySettings, Kind, Target
from .fields import ENDPOINT_FIELDS, GROUP_FIELDS
from .metrics import LISTED, View, setting_families
from .parsing import EndpointInfo, GroupInfo, PollError, parse_endpoints, parse_worker_groups
from .reads import AccountRead
from .scheduler import TargetState, attempt, next_delay, wait_replanned

log = logging.getLogger(__name__)

T = TypeVar("T")


class PeriodicReader(Generic[T]):
    """Reads something every `interval` (after 429s, later), reporting like a target.

    Never reads sooner than `interval` after its previous read, even when its task is stopped
    and started again by reloads; a changed interval applies to the wait in progress.
    """

    def __init__(
        self,
        target: Target,
        read: Callable[[], Awaitable[T]],
        interval: float,
        on_result: Callable[[T], None],
        on_change: Callable[[], None],
    ) -> None:
        self.state = TargetState(target)
        self.interval = interval
        self._read = read
        self._on_result = on_result
        self._on_change = on_change
        self._last_read: float | None = None  # loop_time()
        self._replan = asyncio.Event()

    def set_interval(self, interval: float) -> None:
        self.interval = interval
        self._replan.set()
        self._replan = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self._wait_until_due()
            self._last_read = loop_time()
            self.state, result = await attempt(self.state, self._read)
            if result is not None:
                try:
                    self._on_result(result)
                except Exception:  # keep reading: the next result may apply cleanly
                    log.exception(
                        "applying a listing failed",
                        extra={"fields": {"kind": self.state.target.kind}},
                    )
            self._on_change()

    async def _wait_until_due(self) -> None:
        def remaining() -> float | None:
            if self._last_read is None:
                return None
            streak, retry_after = self.state.rate_limited_streak, self.state.retry_after
            # Jitter may only lengthen the wait: a listing is never read more often.
            delay = max(self.interval, next_delay(self.interval, streak, retry_after))
            return self._last_read + delay - loop_time()

        await wait_replanned(remaining, lambda: self._replan)


# vast-ai/docs show_endpoints.yaml and show_autogroup.yaml; the group list has an older alias.
LISTING_ENDPOINTS_PATH = "/api/v0/endptjobs/"
LISTING_GROUP_PATHS = ("/api/v0/workergroups/", "/api/v0/autojobs/")


@dataclass(frozen=True)
class Account:
    """What the account listing says: its endpoints and worker groups."""

    endpoints: tuple[EndpointInfo, ...]
    groups: tuple[GroupInfo, ...]


class ListingRead(AccountRead):
    """The account listing (discovery): which endpoints and worker groups to poll, and their
    autoscaler settings. A failed read keeps the last known targets."""

    kind = Kind.LISTING
    section = "discovery"
    account: Account | None = None

    async def read(self) -> Account:
        client = self.context.client
        try:
            endpoints = await client.get(LISTING_ENDPOINTS_PATH, parse_endpoints)
        except PollError as exc:
            if exc.reason != "api_error" or "No endpoints" not in exc.message:
                raise
            endpoints = []  # HTTP 400 "No endpoints for user N found.": an account without any
        groups = await client.first_that_exists(
            LISTING_GROUP_PATHS, lambda path: client.get(path, parse_worker_groups)
        )
        return Account(tuple(endpoints), tuple(groups))

    def apply(self, result: Account) -> None:
        self.account = result
        self.context.targets_changed()

    def clear(self) -> None:
        self.account = None

    def view(self, fresh: bool) -> View | None:
        """Settings of this shard's polled endpoints and groups, named as their targets are
        (kept while the listing fails, as the targets it found are)."""
        if self.account is None:
            return None
        targets, owns = self.context.targets, self.context.shard.owns
        names = {t.endpoint_id: t.endpoint_name for t in targets if t.endpoint_id is not None}
        endpoints = tuple(
            replace(endpoint, name=names[endpoint.id])
            for endpoint in self.account.endpoints
            if endpoint.id in names and owns(Kind.ENDPOINT, endpoint.id)
        )
        polled = {t.id: t for t in targets if t.kind == Kind.WORKER_GROUP}
        groups = tuple(
            replace(group, endpoint_name=polled[group.id].endpoint_name)
            for group in self.account.groups
            if group.id in polled and owns(Kind.WORKER_GROUP, group.id)
        )
        return ListingView(endpoints, groups)


@dataclass(frozen=True)
class ListingView(View):
    """The endpoints and worker groups this replica exports settings for (names resolved)."""

    endpoints: tuple[EndpointInfo, ...] = ()
    groups: tuple[GroupInfo, ...] = ()

    def families(self) -> Iterator[Metric]:
        """Endpoint and worker-group settings from the account listing (discovery)."""
        account = self
        labels = ("endpoint_id", "endpoint_name")
        info = GaugeMetricFamily(
            "vastai_endpoint_info",
            f"Endpoint known from the account listing, with its state; value 1; {LISTED}.",
            labels=(*labels, "endpoint_state"),
        )
        settings = setting_families("vastai_endpoint", ENDPOINT_FIELDS, labels)
        for endpoint in account.endpoints:
            values = (str(endpoint.id), endpoint.name)
            info.add_metric((*values, endpoint.state), 1)
            for name, value in endpoint.settings.items():
                settings[name].add_metric(values, value)
        group_labels = ("worker_group_id", "endpoint_id", "endpoint_name")
        groups = GaugeMetricFamily(
            "vastai_worker_group_info",
            f"Worker group known from the account listing, with its template; value 1; {LISTED}.",
            labels=(*group_labels, "template_id", "template_hash"),
        )
        group_settings = setting_families("vastai_worker_group", GROUP_FIELDS, group_labels)
        for group in account.groups:
            endpoint_id = "" if group.endpoint_id is None else str(group.endpoint_id)
            values = (str(group.id), endpoint_id, group.endpoint_name)
            groups.add_metric((*values, group.template_id, group.template_hash), 1)
            for name, value in group.settings.items():
                group_settings[name].add_metric(values, value)
        yield info
        yield from settings.values()
        yield groups
        yield from group_settings.values()


@dataclass(frozen=True)
class Shard:
    """`--shard.index I --shard.count N`: this replica owns the targets whose hash is I mod N.

    The hash (CRC-32 of `kind/id`) is the same in every process and run, so N replicas with
    indexes 0..N-1 split the targets with no overlap and no gap.
    """

    index: int = 0
    count: int = 1

    def owns(self, kind: str, target_id: int | str) -> bool:
        return zlib.crc32(f"{kind}/{target_id}".encode()) % self.count == self.index


def discovered_targets(account: Account, settings: DiscoverySettings) -> list[Target]:
    """Every worker group of a wanted endpoint, and every wanted endpoint that has no group."""
    endpoints = {endpoint.id: endpoint for endpoint in account.endpoints}
    targets = []
    with_groups = set()
    for group in account.groups:
        endpoint = endpoints.get(group.endpoint_id) if group.endpoint_id is not None else None
        name = endpoint.name if endpoint is not None else group.endpoint_name
        if not settings.wants(name):
            continue
        with_groups.add(group.endpoint_id)
        targets.append(Target(Kind.WORKER_GROUP, group.id, "", group.endpoint_id, name))
    for endpoint in account.endpoints:
        if endpoint.id not in with_groups and settings.wants(endpoint.name):
            targets.append(
                Target(Kind.ENDPOINT, endpoint.id, endpoint.name, endpoint.id, endpoint.name)
            )
    return targets


def merge_targets(
    explicit: Iterable[Target],
    discovered: Iterable[Target],
    listed_names: Mapping[int, str] | None = None,
) -> list[Target]:
    """Configured targets and discovered ones, once each.

    Endpoint names: a configured name wins, else the listing's (`listed_names`, endpoint id to
    name), so a configured target without a name still gets the name Vast knows. A configured
    group without `endpoint_id` learns its endpoint from the listing.
    """
    explicit = list(explicit)
    configured = {t.id: t.name for t in explicit if t.kind == Kind.ENDPOINT and t.name}
    listed = dict(listed_names or {})
    discovered = list(discovered)
    by_key = {target.key: target for target in discovered}

    def endpoint_name(endpoint_id: int | None, fallback: str) -> str:
        if endpoint_id is None:
            return fallback
        return configured.get(endpoint_id) or listed.get(endpoint_id) or fallback

    merged: dict[str, Target] = {}
    for target in discovered + explicit:
        found = by_key.get(target.key)
        if target.kind == Kind.WORKER_GROUP and target.endpoint_id is None and found is not None:
            target = replace(target, endpoint_id=found.endpoint_id)
        name = endpoint_name(target.endpoint_id, target.endpoint_name)
        target = replace(target, endpoint_name=name)
        if target.kind == Kind.ENDPOINT:
            target = replace(target, name=name)
        merged[target.key] = target
    return list(merged.values())
