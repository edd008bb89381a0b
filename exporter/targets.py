"""What the exporter polls: targets, their kinds, and how replicas split them (sharding).

Kept apart from the config and the reads so that both, and the scheduler, can name a target
without importing each other.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum


class Kind(StrEnum):
    """What a target is: polled for workers, or one of the periodic account reads (each read
    names its own member; `exporter/reads/`)."""

    ENDPOINT = "endpoint"
    WORKER_GROUP = "worker_group"
    LISTING = "listing"  # the account listing (discovery)
    INSTANCES = "instances"  # the v1 instance list
    BILLING = "billing"  # credit and today's charges
    DEPLOYMENTS = "deployments"  # deployments, their versions and expiry
    # Supply and contracts (issue 23)
    SUPPLY = "supply"  # offers matching each polled worker group's search
    CONTRACTS = "contracts"  # hosts' pending price increases on the polled workers


@dataclass(frozen=True)
class Target:
    """One thing to poll: an endpoint or a worker group (or an account read, id "account").

    `endpoint_id`/`endpoint_name` are what this target's workers are labelled with; for a worker
    group they come from its configured `endpoint_id` and that endpoint's configured name.
    """

    kind: Kind
    id: int | str
    name: str = ""
    endpoint_id: int | None = None
    endpoint_name: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.id}"


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
