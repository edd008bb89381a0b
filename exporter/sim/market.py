"""The simulated marketplace: GPU offers, searched as POST /api/v0/bundles/ searches them.

vast-ai/docs `api-reference/openapi/yaml/search_offers.yaml`: the body is the search object,
each filter `{"op": value}` with the operators eq, neq, gt, lt, gte, lte, in, notin, plus
`type` (on-demand, bid, reserved), `order` (`[[field, "asc"|"desc"], ...]`), `limit` and
`allocated_storage` (GB, "Default is 8GB"); the answer is `{"offers": [...]}`. An offer's
`dph_total` is its price per hour with the allocated storage: `dph_base` (or `min_bid` for a
bid) plus `storage_cost` ($/GB/month, as vast-cli's search offers help says) x the storage /
720 hours. Values are compared as vast-cli sends them: numbers often as strings (`"2"`),
underscores as spaces in names, a two-letter code against the country of a geolocation
("Sweden, SE"), a driver version as its 9-digit number (vastai/api/query.py numeric_version).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CONTROL_KEYS = frozenset({"order", "type", "limit", "allocated_storage", "disable_bundling"})
# search_offers.yaml's enum says "ondemand"; vast-cli sends "on-demand" (and "interruptible"
# becomes "bid" before it is sent).
OFFER_TYPES = frozenset({"on-demand", "ondemand", "bid", "reserved"})
DEFAULT_STORAGE_GB = 8.0  # search_offers.yaml: allocated_storage "Default is 8GB"
HOURS_PER_MONTH = 24 * 30  # vast-cli shows storage_cost as $/GB/month (30 days)
LIST_OPS = frozenset({"in", "notin"})
ORDERED_OPS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
OPERATORS = frozenset({"eq", "neq", *ORDERED_OPS, *LIST_OPS})


@dataclass(frozen=True)
class GpuModel:
    """A GPU model of the marketplace: memory per GPU, the offer sizes seen, price per GPU."""

    name: str
    gpu_ram_mb: int
    sizes: tuple[int, ...]
    price: tuple[float, float]  # dollars per hour per GPU
    dlperf: tuple[float, float]  # per GPU
    compute_cap: int
    flops: float  # TFLOPS per GPU
    disk: tuple[float, float] = (100.0, 2000.0)  # GB free on the machine


MODELS = (
    GpuModel("H100 SXM", 81559, (1, 2, 4, 8), (2.0, 2.9), (210.0, 260.0), 900, 60.0),
    GpuModel("A100 SXM4", 81920, (1, 2, 4, 8), (0.9, 1.4), (110.0, 140.0), 800, 19.5),
    GpuModel("L40S", 46068, (1, 2, 4), (0.6, 0.9), (80.0, 100.0), 890, 90.0),
    GpuModel("RTX 5090", 32607, (1, 2), (0.5, 0.8), (95.0, 120.0), 1200, 105.0),
    # Consumer hosts with little disk: no RTX 4090 offer has 64 GB (the demo's group 1005).
    GpuModel("RTX 4090", 24564, (1, 2, 4), (0.28, 0.55), (65.0, 90.0), 890, 82.0, (34.0, 60.0)),
    GpuModel("RTX 3090", 24576, (1, 2, 4), (0.14, 0.28), (35.0, 48.0), 860, 35.0, (40.0, 500.0)),
)
GEOLOCATIONS = ("Sweden, SE", "Texas, US", "Quebec, CA", "Norway, NO", "Germany, DE",
                "California, US", "Japan, JP", "Taiwan, TW")  # fmt: skip


def offers(seed: int, per_size: int = 4) -> list[dict[str, Any]]:
    """A marketplace of `per_size` offers for each size of each GPU model, as search_offers.yaml
    shows an offer (host and machine data included: the exporter must never keep them)."""
    rng = random.Random(seed * 31 + 7)
    found = []
    for model in MODELS:
        for size in model.sizes:
            for _ in range(per_size):
                found.append(_offer(rng, model, size, 32_000_000 + len(found) * 7919))
    return found


def _offer(rng: random.Random, model: GpuModel, size: int, ident: int) -> dict[str, Any]:
    per_gpu = rng.uniform(*model.price)
    dph_base = round(per_gpu * size, 4)
    machine = rng.randint(70_000, 79_999)
    reliability = round(rng.uniform(0.97, 0.9995), 4)
    dlperf = round(rng.uniform(*model.dlperf) * size, 3)
    return {
        "id": ident,
        "ask_contract_id": ident,
        "bundle_id": ident * 3 + 1,
        "machine_id": machine,
        "host_id": 880_000 + machine % 9973,
        "hostname": None,
        "public_ipaddr": f"198.51.100.{machine % 250 + 1}",  # documentation range
        "geolocation": rng.choice(GEOLOCATIONS),
        "gpu_name": model.name,
        "num_gpus": size,
        "gpu_ram": model.gpu_ram_mb,
        "gpu_total_ram": model.gpu_ram_mb * size,
        "gpu_frac": round(size / 8 if size < 8 else 1.0, 3),
        "gpu_arch": "nvidia",
        "compute_cap": model.compute_cap,
        "total_flops": round(model.flops * size, 2),
        "dlperf": dlperf,
        "cpu_arch": "amd64",
        "cpu_cores": 16 * size,
        "cpu_cores_effective": 8.0 * size,
        "cpu_ram": 64_000 * size,
        "cuda_max_good": rng.choice((12.4, 12.8, 13.0)),
        "driver_version": "570.133.07",
        "driver_vers": 570133007,
        "disk_space": round(rng.uniform(*model.disk), 1),
        "disk_bw": round(rng.uniform(800, 6000), 1),
        "inet_up": round(rng.uniform(200, 5000), 1),
        "inet_down": round(rng.uniform(500, 8000), 1),
        "inet_up_cost": 0.002,
        "inet_down_cost": 0.002,
        "direct_port_count": rng.choice((0, 8, 32, 64)),
        "static_ip": rng.random() < 0.7,
        "pci_gen": 4.0,
        "pcie_bw": 25.1,
        "has_avx": 1,
        "vms_enabled": False,
        "os_version": "22.04",
        "reliability": reliability,
        "reliability2": reliability,
        "verified": rng.random() < 0.9,
        "verification": "verified",
        "rentable": True,
        "rented": False,
        "external": False,
        "hosting_type": rng.choice((0, 1)),
        "is_bid": False,
        "dph_base": dph_base,
        "min_bid": round(dph_base * 0.55, 4),
        "storage_cost": 0.15,  # $/GB/month
        "score": round(dlperf / max(dph_base, 0.01), 3),
        "start_date": 1760000000.0,
        "end_date": 1790000000.0,
        "duration": 1790000000.0 - 1760000000.0,
        "webpage": None,
    }


def search(offered: Iterable[Mapping[str, Any]], body: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) of POST /api/v0/bundles/ with `body` over these offers."""
    problem = _invalid(body)
    if problem is not None:
        return 400, {"success": False, "error": "invalid_request", "msg": problem}
    filters = {key: ops for key, ops in body.items() if key not in CONTROL_KEYS}
    storage = float(body.get("allocated_storage", DEFAULT_STORAGE_GB))
    bid = body.get("type", "on-demand") == "bid"
    found = [_priced(offer, storage, bid) for offer in offered]
    found = [offer for offer in found if _matches(offer, filters)]
    for field, direction in reversed(body.get("order") or []):
        found.sort(key=_order_key(field, direction == "desc"))
    limit = body.get("limit")
    return 200, {"offers": found if limit is None else found[: int(limit)]}


def _invalid(body: Any) -> str | None:
    """What is wrong with a search body, if anything (search_offers.yaml answers 400)."""
    if not isinstance(body, dict):
        return "Invalid json body"
    if body.get("type", "on-demand") not in OFFER_TYPES:
        return f"invalid type {body.get('type')!r}"
    limit, storage = body.get("limit"), body.get("allocated_storage", DEFAULT_STORAGE_GB)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        return "limit must be a non-negative integer"
    if not isinstance(storage, int | float) or isinstance(storage, bool) or storage < 0:
        return "allocated_storage must be a number of GB"
    order = body.get("order") or []
    if not isinstance(order, list) or not all(
        isinstance(item, list) and len(item) == 2 and item[1] in ("asc", "desc") for item in order
    ):
        return 'order is a list of [field, "asc"|"desc"]'
    for key, ops in body.items():
        if key in CONTROL_KEYS:
            continue
        if not isinstance(ops, dict) or not set(ops) <= OPERATORS:
            return f"invalid filter for {key}"
        if any(op in LIST_OPS and not isinstance(ops[op], list) for op in ops):
            return f"{key}: in and notin take a list"
    return None


def _priced(offer: Mapping[str, Any], storage_gb: float, bid: bool) -> dict[str, Any]:
    """The offer with its price for this search: the storage asked for, bid or not."""
    base = offer["min_bid"] if bid else offer["dph_base"]
    storage = offer["storage_cost"] * storage_gb / HOURS_PER_MONTH
    total = round(base + storage, 6)
    return {
        **offer,
        "is_bid": bid,
        "storage_total_cost": round(storage, 6),
        "dph_total": total,
        "dlperf_per_dphtotal": round(offer["dlperf"] / total, 3),
        "flops_per_dphtotal": round(offer["total_flops"] / total, 3),
    }


def _matches(offer: Mapping[str, Any], filters: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(
        _holds(offer, field, op, value)
        for field, ops in filters.items()
        for op, value in ops.items()
    )


def _holds(offer: Mapping[str, Any], field: str, op: str, wanted: Any) -> bool:
    """Whether the offer meets one condition; a field the offer lacks meets only neq/notin."""
    if field == "driver_version" and isinstance(wanted, int):
        field = "driver_vers"
    have = offer.get(field)
    if have is None:
        return op in ("neq", "notin")
    if op in LIST_OPS:
        found = any(_equal(field, have, item) for item in wanted)
        return found if op == "in" else not found
    if op in ORDERED_OPS:
        a, b = _number(have), _number(wanted)
        return a is not None and b is not None and ORDERED_OPS[op](a, b)
    equal = _equal(field, have, wanted)
    return equal if op == "eq" else not equal


def _equal(field: str, have: Any, wanted: Any) -> bool:
    if isinstance(have, bool) or isinstance(wanted, bool):
        return bool(have) == wanted if isinstance(wanted, bool) else False
    a, b = _number(have), _number(wanted)
    if a is not None and b is not None:
        return a == b
    text, other = str(have).replace("_", " "), str(wanted).replace("_", " ")
    if field == "geolocation" and len(other) == 2:
        return text.rsplit(", ", 1)[-1] == other
    return text == other


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _order_key(field: str, descending: bool) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    """Offers without the field come last; numbers by value, the rest by text."""

    def key(offer: Mapping[str, Any]) -> tuple[int, Any]:
        value = offer.get(field)
        number = _number(value)
        if number is None:
            return (1, 0.0)
        return (0, -number if descending else number)

    return key
