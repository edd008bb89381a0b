"""Account discovery: which endpoints and worker groups to poll, read from the account listing.

The listing is read once per `discovery.interval` (never sooner: Vast rate-limits these calls
per key) and backs off on 429. It is reported like a target (`kind="listing"`). A failed read
keeps the last known set of targets; a successful one replaces it, so deleted endpoints lose
their series and new ones are polled at once. Configured and discovered targets are merged by
`exporter.targets.merge_targets`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from prometheus_client.core import GaugeMetricFamily, Metric

from ..fields import ENDPOINT_FIELDS, GROUP_FIELDS
from ..metrics import LISTED, View, setting_families
from ..pacing import ApiPath
from ..parsing import EndpointInfo, GroupInfo, PollError, parse_endpoints, parse_worker_groups
from ..settings import BOOL, DURATION, ONCE_A_SECOND, REGEX, setting
from ..targets import Kind, Target
from .base import AccountRead


@dataclass(frozen=True)
class DiscoverySettings:
    """Account discovery: poll every endpoint and worker group the account listing shows."""

    enabled: bool = setting(False, BOOL, "Poll what the account listing shows")
    interval: float = setting(
        300.0, DURATION, "How often the account listing is read", ONCE_A_SECOND
    )
    include: str | None = setting(
        None, REGEX, "Only endpoints whose endpoint_name matches", nullable=True
    )
    exclude: str | None = setting(
        None, REGEX, "No endpoint whose endpoint_name matches", nullable=True
    )

    def wants(self, endpoint_name: str) -> bool:
        if self.include is not None and not re.search(self.include, endpoint_name):
            return False
        return self.exclude is None or not re.search(self.exclude, endpoint_name)


# vast-ai/docs show_endpoints.yaml and show_autogroup.yaml; the group list has an older alias,
# tried when the newer name answers 404. The endpoint list's published x-rate-limit threshold
# (3.0) is not enforced per path: the listing alone asks it, once a read, and
# discovery.interval (5m by default) spaces the reads; its floor (1s) is older than this
# declaration. The group list is also read by the supply read (its search queries): two reads
# may ask it at once, so its threshold (2.0) is kept.
LISTING_ENDPOINTS = ApiPath("/api/v0/endptjobs/", 0.0, "show_endpoints.yaml")
LISTING_GROUPS = (
    ApiPath("/api/v0/workergroups/", 2.0, "show_autogroup.yaml (x-rate-limit threshold 2.0)"),
    ApiPath("/api/v0/autojobs/", 2.0, "show_autogroup.yaml, its older name (vast-cli)"),
)
LISTING_ENDPOINTS_PATH = LISTING_ENDPOINTS.path
LISTING_GROUP_PATHS = tuple(path.path for path in LISTING_GROUPS)


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
    settings_type = DiscoverySettings
    paths = (LISTING_ENDPOINTS, *LISTING_GROUPS)
    demo: ClassVar[Mapping[str, Any]] = {"enabled": True, "interval": 10.0}
    account: Account | None = None

    @classmethod
    def describe(cls, settings: DiscoverySettings) -> str:
        include, exclude = settings.include or "every endpoint", settings.exclude or "none"
        return (
            f"on, listing read every {settings.interval:g}s, include {include}, exclude {exclude}"
        )

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

    def found_targets(self) -> tuple[list[Target], dict[int, str]]:
        """Every wanted endpoint and worker group of the last listing, kept while it fails."""
        if self.account is None:
            return [], {}
        names = {endpoint.id: endpoint.name for endpoint in self.account.endpoints}
        return discovered_targets(self.account, self.settings()), names

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
