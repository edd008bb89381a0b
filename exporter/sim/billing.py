"""The simulated account's money: credit that falls, and charges that grow through the UTC day.

Charges follow Vast's billing table (exporter/pricing.py): each simulated worker's contract
accrues GPU time (dph_base) while it is in a compute-billed state, disk (storage_total_cost)
while billed at all, and a trickle of bandwidth while it serves. Answers are shaped as
vast-ai/docs show_user.yaml and show_charges.yaml (tree format) document them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..pricing import COMPUTE, STORAGE

DAY = 86400
START_CREDIT = 600.0  # about 18 hours of the demo account's spend: the runway panel shows it
MAX_PAGE = 500
BANDWIDTH = {"bwd": 0.004, "bwu": 0.002}  # $/h while serving
# Contracts of the account that are no serverless workers: a plain instance and a volume.
OTHER_CONTRACTS = (
    ("instance", 21000777, {"gpu": 0.35, "disk": 0.004}),
    ("volume", 5512, {"disk": 0.012}),
)


@dataclass(frozen=True)
class WorkerBill:
    """What one simulated worker accrues per hour now, and whose it is."""

    instance_id: int
    endpoint_id: int
    group_id: int
    state: str  # COMPUTE, STORAGE or anything else (not billed)
    gpu_per_hour: float
    disk_per_hour: float


@dataclass
class SimulatedBilling:
    """Today's contracts and the credit, advanced one step at a time."""

    day: int = -1
    spent: float = 0.0
    contracts: dict[int, tuple[int, int, dict[str, float]]] = field(default_factory=dict)
    others: dict[int, dict[str, float]] = field(default_factory=dict)

    def seed(self, t: float, bills: Iterable[tuple[WorkerBill, float]]) -> None:
        """Charges since midnight for workers that were running before the simulation began
        (each with the time it started), as if they had been billed at today's rate."""
        self._roll_day(t)
        midnight = self.day * DAY
        for bill, started in bills:
            self.accrue(bill, (t - max(midnight, started)) / 3600, count_spent=False)
        for kind, ident, rates in OTHER_CONTRACTS:
            amounts = self.others.setdefault(ident, {})
            for item, rate in rates.items():
                amounts[item] = rate * (t - midnight) / 3600
            del kind

    def step(self, t: float, bills: Iterable[WorkerBill], seconds: float = 1.0) -> None:
        self._roll_day(t)
        for bill in bills:
            self.accrue(bill, seconds / 3600)
        for _, ident, rates in OTHER_CONTRACTS:
            amounts = self.others.setdefault(ident, {})
            for item, rate in rates.items():
                amounts[item] = amounts.get(item, 0.0) + rate * seconds / 3600
                self.spent += rate * seconds / 3600

    def accrue(self, bill: WorkerBill, hours: float, count_spent: bool = True) -> None:
        if hours <= 0 or bill.state not in (COMPUTE, STORAGE):
            return
        _, _, amounts = self.contracts.setdefault(
            bill.instance_id, (bill.endpoint_id, bill.group_id, {})
        )
        rates = {"disk": bill.disk_per_hour}
        if bill.state == COMPUTE:
            rates |= {"gpu": bill.gpu_per_hour, **BANDWIDTH}
        for item, rate in rates.items():
            amounts[item] = amounts.get(item, 0.0) + rate * hours
            if count_spent:
                self.spent += rate * hours

    def _roll_day(self, t: float) -> None:
        day = int(t // DAY)
        if day != self.day:
            self.day, self.contracts, self.others = day, {}, {}

    # ----- answers ------------------------------------------------------------------------

    def user(self, user_id: int) -> dict[str, Any]:
        """GET /api/v0/users/current/, with the personal data a real record carries."""
        credit = round(START_CREDIT - self.spent, 4)
        return {
            "id": user_id,
            "key_id": 77001,
            "email": "demo.user@example.com",
            "ssh_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISimulatedKeyNotARealOne demo@sim",
            "username": "demo",
            "balance": round(-self.spent * 0.1, 4),
            "credit": credit,
            "can_pay": True,
            "sid": "sim-session",
        }

    def charges(self, query: Mapping[str, str]) -> tuple[int, Any]:
        """GET /api/v0/charges/ over today's contracts."""
        return charges_answer(self._nodes, self.day * DAY, query)

    def _nodes(self, fmt: str | None) -> list[dict[str, Any]]:
        start = self.day * DAY
        contracts = [
            _contract("instance", ident, amounts, start, {"endpoint_id": ep, "workergroup_id": g})
            for ident, (ep, g, amounts) in sorted(self.contracts.items())
        ]
        others = [
            _contract(kind, ident, self.others.get(ident, {}), start, {})
            for kind, ident, _ in OTHER_CONTRACTS
        ]
        if fmt != "tree":
            return contracts + others
        by_endpoint: dict[int, dict[int, list[dict[str, Any]]]] = {}
        for contract in contracts:
            meta = contract["metadata"]
            groups = by_endpoint.setdefault(meta["endpoint_id"], {})
            groups.setdefault(meta["workergroup_id"], []).append(contract)
        wrappers = []
        for endpoint_id, groups in sorted(by_endpoint.items()):
            children = [
                _wrapper(f"workergroup-{gid}", members, start, {"endpoint_id": endpoint_id})
                for gid, members in sorted(groups.items())
            ]
            wrappers.append(_wrapper(f"endpoint-{endpoint_id}", children, start, {}))
        return wrappers + others


def _contract(
    kind: str, ident: int, amounts: dict[str, float], start: int, metadata: dict[str, Any]
) -> dict[str, Any]:
    items = [
        {
            "start": start,
            "end": start,
            "type": item,
            "source": None,
            "description": f"{item} charges",
            "amount": round(amount, 3),
            "metadata": {},
            "items": [],
        }
        for item, amount in amounts.items()
    ]
    return {
        "start": start,
        "end": start,
        "type": kind,
        "source": f"{kind}-{ident}",
        "description": f"{kind.capitalize()} {ident} Charges",
        "amount": round(sum(amounts.values()), 3),
        "metadata": metadata,
        "items": items,
    }


def _wrapper(
    source: str, children: list[dict[str, Any]], start: int, metadata: dict[str, Any]
) -> dict[str, Any]:
    return {
        "start": start,
        "end": start,
        "type": "serverless",
        "source": source,
        "description": f"{source} charges",
        "amount": round(sum(child["amount"] for child in children), 3),
        "metadata": metadata,
        "items": children,
    }


def charges_answer(
    nodes: Callable[[str | None], list[dict[str, Any]]],
    today: int,
    query: Mapping[str, str],
    page_size: int = MAX_PAGE,
) -> tuple[int, Any]:
    """(HTTP status, JSON body) of GET /api/v0/charges/ for a query string, over the charge
    nodes of the UTC day starting at `today` in the format asked (`nodes(format)`), as
    show_charges.yaml documents it: the day range is required (400 without it), `type` filters,
    pages of at most `page_size` nodes with an opaque `after_token` (400 `invalid_token`)."""
    try:
        filters = json.loads(query.get("select_filters", "{}"))
        day = filters["day"]
        start, end = int(day["gte"]), int(day["lte"])
        limit = min(page_size, max(1, int(query.get("limit", "100"))))
    except (ValueError, KeyError, TypeError):
        return 400, {
            "success": False,
            "msg": "Must provide both 'day' gte and lte filters for instance charges",
        }
    wanted = filters.get("type", {}).get("in") if isinstance(filters.get("type"), dict) else None
    found = [] if end < today or start > today + DAY else nodes(query.get("format"))
    if wanted:
        found = [n for n in found if n["type"] in wanted]
    offset = 0
    if "after_token" in query:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(query["after_token"]))["offset"])
        except (ValueError, KeyError, TypeError):
            return 400, {
                "success": False,
                "error": "invalid_token",
                "msg": "Invalid pagination token",
            }
    page = found[offset : offset + limit]
    more = offset + limit < len(found)
    token = (
        base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
        if more
        else None
    )
    return 200, {
        "success": True,
        "count": len(page),
        "total": len(found),
        "next_token": token,
        "results": page,
    }
