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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from .clock import loop_time
from .config import DiscoverySettings, Target
from .metrics import TargetState
from .scheduler import attempt, next_delay, wait_replanned
from .vast import Account

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
        targets.append(Target("worker_group", group.id, "", group.endpoint_id, name))
    for endpoint in account.endpoints:
        if endpoint.id not in with_groups and settings.wants(endpoint.name):
            targets.append(
                Target("endpoint", endpoint.id, endpoint.name, endpoint.id, endpoint.name)
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
    configured = {t.id: t.name for t in explicit if t.kind == "endpoint" and t.name}
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
        if target.kind == "worker_group" and target.endpoint_id is None and found is not None:
            target = replace(target, endpoint_id=found.endpoint_id)
        name = endpoint_name(target.endpoint_id, target.endpoint_name)
        target = replace(target, endpoint_name=name)
        if target.kind == "endpoint":
            target = replace(target, name=name)
        merged[target.key] = target
    return list(merged.values())
