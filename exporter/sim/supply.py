"""The simulation's supply and contracts: a marketplace that moves, and hosts' pending price
increases on some workers.

- The worker groups search as their records say (sim/records.py search: their GPU models,
  GPU memory and disk). Offers (sim/market.py) drift in price by up to 8% over a simulated day
  and some are rented out part of it, so the offer counts and cheapest prices move. No RTX 4090
  offer has 64 GB of disk, so the fresh endpoint's group (1005) finds none.
- Pending price increases, as vast-cli's vastai/api/price_increase.py documents the envelope:
  one on the oldest worker of the spare group (GPU price +30%, its contract ends 20 hours after
  the simulation starts: in under a day), one on the oldest worker of group 1001 (only storage
  goes up: the new GPU price is null; ends in 4 days), and one on an instance of the account
  that is no serverless worker.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import market

HOUR = 3600.0
DAY = 24 * HOUR
NO_SUPPLY_GROUP_ID = 1005  # its search (an RTX 4090 with 64 GB of disk) matches no offer
ALWAYS_AVAILABLE = 4  # every fourth offer is never rented out
OTHER_INSTANCE_ID = 17_654_321  # an instance of the account that is no serverless worker


@dataclass(frozen=True)
class Contract:
    """What a pending increase needs of a worker: its instance and prices."""

    id: int
    group_id: int
    num_gpus: int
    dph_total: float  # dollars per hour, GPUs of the instance
    storage_per_hour: float  # dollars per hour of its disk
    disk_gb: float
    started_at: float
    leaving: bool  # stopping, destroying


@dataclass(frozen=True)
class _Increase:
    group_id: int
    created_before: float  # seconds before the simulation started (or the worker did)
    runs_for: float  # contract end - creation, seconds
    gpu_factor: float | None  # None: the GPU price does not change
    disk_factor: float | None


_INCREASES = (
    _Increase(1002, 3 * HOUR, 23 * HOUR, 1.3, None),
    _Increase(1001, 12 * HOUR, 4 * DAY + 12 * HOUR, None, 1.5),
)


class SimulatedSupply:
    """The marketplace and the pending increases of one simulation (seeded, clock-driven)."""

    def __init__(self, seed: int, started: float, cycle: float) -> None:
        self._offers = market.offers(seed)
        self._started = started
        self._cycle = cycle  # seconds of one simulated day

    def search(self, body: Any, now: float) -> tuple[int, dict[str, Any]]:
        """POST /api/v0/bundles/ at `now`."""
        return market.search(self._current(now), body)

    def _current(self, now: float) -> list[dict[str, Any]]:
        angle = 2 * math.pi * (now - self._started) / self._cycle
        current = []
        for index, offer in enumerate(self._offers):
            phase = index * 2.399  # the golden angle spreads the offers' cycles
            factor = 1 + 0.08 * math.sin(angle + phase)
            available = index % ALWAYS_AVAILABLE == 0 or math.cos(angle + phase) > -0.6
            current.append(
                {
                    **offer,
                    "dph_base": round(offer["dph_base"] * factor, 4),
                    "min_bid": round(offer["min_bid"] * factor, 4),
                    "rentable": available,
                }
            )
        return current

    def pending(self, contracts: Iterable[Contract]) -> dict[str, Any]:
        """The envelope of GET /api/v0/instances/pending-price-increases/."""
        contracts = sorted(contracts, key=lambda c: (c.started_at, c.id))
        rows = []
        for number, increase in enumerate(_INCREASES):
            staying = [c for c in contracts if c.group_id == increase.group_id and not c.leaving]
            if staying:
                rows.append(self._row(number, increase, staying[0]))
        rows.append(self._other_row())
        return {"success": True, "count": len(rows), "truncated": False,
                "pending_price_increases": rows}  # fmt: skip

    def _row(self, number: int, increase: _Increase, contract: Contract) -> dict[str, Any]:
        created = max(self._started, contract.started_at) - increase.created_before
        end = created + increase.runs_for
        gpu = contract.dph_total / contract.num_gpus / HOUR
        disk = contract.storage_per_hour / contract.disk_gb / HOUR
        return _envelope_row(
            900_000 + number * 1000 + contract.id % 1000,
            contract.id,
            (gpu, None if increase.gpu_factor is None else gpu * increase.gpu_factor),
            (disk, None if increase.disk_factor is None else disk * increase.disk_factor),
            created,
            end,
        )

    def _other_row(self) -> dict[str, Any]:
        created = self._started - 2 * DAY
        gpu = 0.45 / HOUR
        return _envelope_row(
            899_999, OTHER_INSTANCE_ID, (gpu, gpu * 1.1), (None, None), created, created + 3 * DAY
        )


def _envelope_row(
    pending_id: int,
    contract_id: int,
    gpu: tuple[float | None, float | None],
    disk: tuple[float | None, float | None],
    created: float,
    end: float,
) -> dict[str, Any]:
    """One row as vast-cli's list_pending documents it: costs per second (GPU per GPU, disk per
    GB), bandwidth per GB, the platform fee a fraction; null new values did not change."""
    return {
        "pending_price_increase_id": pending_id,
        "contract_id": contract_id,
        "host_id": 880_000 + contract_id % 9973,
        "new_gpu_costpersec": _rounded(gpu[1]),
        "new_disk_ram_costpersec": _rounded(disk[1]),
        "new_bwu_cost": None,
        "new_bwd_cost": None,
        "new_platform_fee": None,
        "old_gpu_costpersec": _rounded(gpu[0]),
        "old_disk_ram_costpersec": _rounded(disk[0]),
        "old_bwu_cost": 0.002,
        "old_bwd_cost": 0.002,
        "old_platform_fee": 0.0,
        "contract_end_date": round(end, 3),
        "ask_end_date": round(end + 90 * DAY, 3),
        "created_at": round(created, 3),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6e}")
