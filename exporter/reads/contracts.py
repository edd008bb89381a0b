"""Contracts: the hosts' pending price increases on the polled workers, and when their
contracts end.

A host that raises its price opens a pending increase on each contract (instance) it hosts;
until the renter accepts, "auto-extend stops at the old price" and the worker ends at
`contract_end_date`. One call, `GET /api/v0/instances/pending-price-increases/` (vast-cli
vastai/api/price_increase.py list_pending; no published limit: spaced a second apart like the
instance list), once per `contracts.interval`. Of each row only the contract (the worker's
instance id), the GPU price per GPU before and after (dollars per GPU per second, x3600; a null
new price did not change) and the two end dates are kept; accepting and rejecting are writes,
never called. A key without permission fails this read alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..fields import PRICE_INCREASE_FIELDS, PRICE_INCREASES, parse_number
from ..metrics import View
from ..pacing import ApiPath
from ..parsing import parse_results, parse_worker_id
from ..settings import BOOL, DURATION, ONCE_A_SECOND, setting
from ..targets import Kind
from ..worker_families import WorkerFamily, WorkerSeries
from .base import AccountRead

PENDING = ApiPath(
    "/api/v0/instances/pending-price-increases/",
    1.0,
    f"{PRICE_INCREASES} (no published limit: a second apart, as the instance list)",
)
_OLD_GPU, _NEW_GPU, _END, _OFFERED_END = PRICE_INCREASE_FIELDS
CONTRACTED = "cached from the last read of the pending price increases"
PENDING_FAMILY = WorkerFamily(
    "vastai_worker_pending_price_increase",
    "1 for a worker whose host has a pending price increase on its contract (contract_id); "
    f"{CONTRACTED}.",
)
GPU_PRICE_FAMILY = WorkerFamily(
    f"vastai_worker_{_OLD_GPU.metric}", f"{_OLD_GPU.help}; {CONTRACTED}.", ("price",)
)
END_FAMILY = WorkerFamily(f"vastai_worker_{_END.metric}", f"{_END.help}; {CONTRACTED}.")
OFFERED_END_FAMILY = WorkerFamily(
    f"vastai_worker_{_OFFERED_END.metric}", f"{_OFFERED_END.help}; {CONTRACTED}."
)


@dataclass(frozen=True)
class ContractsSettings:
    """Hosts' pending price increases on the polled workers, and their contracts' ends."""

    enabled: bool = setting(False, BOOL, "Read the hosts' pending price increases")
    interval: float = setting(
        60.0, DURATION, "How often the pending price increases are read", ONCE_A_SECOND
    )


@dataclass(frozen=True, slots=True)
class PendingIncrease:
    """What the exporter keeps of a pending increase on one worker's contract."""

    old_gpu: float | None  # dollars per GPU per hour now
    new_gpu: float | None  # after the increase (the old price when it does not change)
    contract_end: float | None  # unix seconds
    offered_end: float | None  # unix seconds, if accepted
    created_at: float  # unix seconds; the newest row of a contract wins


def parse_pending(payload: Any) -> dict[str, PendingIncrease]:
    """The increases by worker id (the row's contract_id); rows without a contract are
    skipped, and of two rows for one contract the newer is kept."""
    found: dict[str, PendingIncrease] = {}
    for row in parse_results(payload, "pending_price_increases"):
        worker_id = parse_worker_id(row.get("contract_id"))
        if worker_id is None:
            continue
        old_gpu = _OLD_GPU.convert(row.get(_OLD_GPU.api))
        new_gpu = _NEW_GPU.convert(row.get(_NEW_GPU.api))
        increase = PendingIncrease(
            old_gpu,
            old_gpu if new_gpu is None else new_gpu,
            _END.convert(row.get(_END.api)),
            _OFFERED_END.convert(row.get(_OFFERED_END.api)),
            parse_number(row.get("created_at")) or 0.0,
        )
        known = found.get(worker_id)
        if known is None or increase.created_at >= known.created_at:
            found[worker_id] = increase
    return found


class ContractsRead(AccountRead):
    """Pending price increases (contracts.*), joined to the polled workers by id when
    rendered; a key without permission fails this read alone."""

    kind = Kind.CONTRACTS
    section = "contracts"
    settings_type = ContractsSettings
    paths = (PENDING,)
    demo: ClassVar[Mapping[str, Any]] = {"enabled": True, "interval": 10.0}
    found: dict[str, PendingIncrease] | None = None

    async def read(self) -> dict[str, PendingIncrease]:
        return await self.context.client.get(PENDING.path, parse_pending)

    def apply(self, result: dict[str, PendingIncrease]) -> None:
        self.found = result

    def clear(self) -> None:
        self.found = None

    def view(self, fresh: bool) -> View | None:
        if self.found is None or not fresh:
            return None
        return ContractsView(self.found)


@dataclass(frozen=True)
class ContractsView(View):
    """The pending increases by worker id; the renderers keep those of the workers this
    replica exports, labelled as each worker is."""

    increases: Mapping[str, PendingIncrease]

    def worker_families(self, statuses: Mapping[str, str | None]) -> Iterator[WorkerSeries]:
        increases = self.increases
        yield WorkerSeries(PENDING_FAMILY, dict.fromkeys(increases, 1.0))
        yield WorkerSeries(
            GPU_PRICE_FAMILY,
            {
                key: tuple(
                    ((which,), price)
                    for which, price in (("old", i.old_gpu), ("new", i.new_gpu))
                    if price is not None
                )
                for key, i in increases.items()
                if i.old_gpu is not None or i.new_gpu is not None
            },
        )
        yield WorkerSeries(
            END_FAMILY,
            {key: i.contract_end for key, i in increases.items() if i.contract_end is not None},
        )
        yield WorkerSeries(
            OFFERED_END_FAMILY,
            {key: i.offered_end for key, i in increases.items() if i.offered_end is not None},
        )
