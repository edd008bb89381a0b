"""The parts of the simulated records that Vast publishes but the simulation does not drive.

Why: every record the simulator serves carries each field that Vast's OpenAPI (vast-ai/docs
`api-reference/openapi/yaml/`) and its CLI (`vastai` 1.9.1) read, with the published type, so
that Vast's own client reads the simulated account as it reads a real one
(tests/test_vast_cli.py). The fields here are the machine's hardware, the offer's pricing, a
worker group's offer search and the account's profile: fixed per machine or per group, derived
from the simulation's own figures (price, disk, GPU model) and from the machine id, never from
the simulation's random stream, so adding a field never changes the seeded run.
"""

from __future__ import annotations

import random
from typing import Any

# show_instances.yaml's search/instance objects: the price split by part, $/h.
PRICE_PARTS = (
    "gpuCostPerHour",
    "diskHour",
    "totalHour",
    "discountTotalHour",
    "discountedTotalPerHour",
)
HOURS_A_MONTH = 24 * 30  # storage_cost is $/GB/month: 0.15 x 10.08 GB / 720 h = 0.0021 $/h
DAY = 86400.0

# name -> (memory bandwidth GB/s, FP32 TFLOPS, NVLink GB/s between two of them); the figures
# Vast's offers show for these models (search_offers.yaml: gpu_mem_bw, total_flops, bw_nvlink).
_GPU_HARDWARE: dict[str, tuple[float, float, float]] = {
    "H100 SXM": (3350.0, 66.9, 900.0),
    "A100 SXM4": (2039.0, 19.5, 600.0),
    "RTX 4090": (1008.0, 82.6, 0.0),
    "RTX 3090": (936.0, 35.6, 0.0),
}
_CPUS = (
    ("AMD EPYC 7B13 64-Core Processor", 128),
    ("AMD EPYC 9554 64-Core Processor", 128),
    ("Xeon® Platinum 8480+", 112),
    ("AMD Ryzen Threadripper PRO 5975WX 32-Cores", 64),
)
_BOARDS = ("ROME2D32GM-2T", "H13SSL-N", "WRX80 Creator", "X13DEG-OA")
_DISKS = ("SAMSUNG MZQL23T8HCLS", "Micron 7450 MTFDKCC3T8TFR", "Samsung SSD 990 PRO 4TB")


def machine(machine_id: int, gpu_name: str, num_gpus: int) -> dict[str, Any]:
    """The hardware of an instance's machine (show_instance.yaml), fixed per machine id."""
    rng = random.Random(machine_id)
    mem_bw, tflops, nvlink = _GPU_HARDWARE[gpu_name]
    cpu_name, cores = rng.choice(_CPUS)
    direct_ports = 100
    port_start = 40000 + (machine_id % 200) * direct_ports
    return {
        "cpu_arch": "amd64",
        "cpu_name": cpu_name,
        "cpu_cores": cores,
        "cpu_cores_effective": float(min(cores, 16 * num_gpus)),
        "cpu_ram": 32_000 * num_gpus,  # MB, as show_instances.yaml's 15989 beside mem_limit 15.7
        "gpu_arch": "nvidia",
        "gpu_frac": 1.0,
        "gpu_lanes": 16,
        "gpu_mem_bw": mem_bw,
        "bw_nvlink": nvlink if num_gpus > 1 else 0.0,
        "total_flops": round(tflops * num_gpus, 2),
        "mobo_name": rng.choice(_BOARDS),
        "pci_gen": 4.0 if gpu_name.startswith("RTX 3") else 5.0,
        "pcie_bw": round(rng.uniform(22.0, 26.0) if gpu_name.startswith("RTX 3") else 50.0, 1),
        "disk_name": rng.choice(_DISKS),
        "disk_bw": round(rng.uniform(2500.0, 6500.0), 1),  # MB/s
        "os_version": "22.04",
        "inet_up": round(rng.uniform(400.0, 2000.0), 1),  # Mb/s; vast-cli's "Net up" column
        "inet_down": round(rng.uniform(800.0, 3000.0), 1),
        "direct_port_count": direct_ports,
        "direct_port_start": port_start,
        "direct_port_end": port_start + direct_ports - 1,
        "static_ip": machine_id % 3 == 0,
        "host_id": 100_000 + machine_id // 7,
        "hosting_type": 1,
        "verification": "verified",
        "rentable": True,
        "external": False,
    }


def pricing(dph_base: float, storage: float, disk_space: float, gpu_mib: int) -> dict[str, Any]:
    """An instance's price fields (show_instances.yaml): dph_total = dph_base + storage, and the
    search/instance objects that split it, all $/h but storage_cost ($/GB/month)."""
    total = round(dph_base + storage, 6)
    parts = dict(zip(PRICE_PARTS, (dph_base, storage, total, 0, total), strict=True))
    return {
        "dph_base": dph_base,
        "dph_total": total,
        "storage_total_cost": storage,
        "storage_cost": round(storage * HOURS_A_MONTH / disk_space, 6),
        "vram_costperhour": round(dph_base / gpu_mib, 9),
        "min_bid": round(dph_base * 0.37, 6),  # show_instances.yaml: 0.296 beside dph_base 0.8
        "is_bid": False,
        "search": dict(parts),
        "instance": dict(parts),
        "credit_balance": None,
        "credit_discount": None,
        "credit_discount_max": 0.4,
    }


def ports(running: bool, port_start: int) -> dict[str, list[dict[str, str]]] | None:
    """The port map of show_instances.yaml: only running instances have one."""
    if not running:
        return None
    return {
        f"{inner}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port_start + offset)}]
        for offset, inner in enumerate((22, 8000))
    }


def search(
    gpus: tuple[str, ...], num_gpus: int, gpu_ram: int, disk_space: float
) -> tuple[str, dict[str, Any]]:
    """A worker group's offer search, as the string `vastai create workergroup
    --search_params` sends (vastai/api/endpoints.py appends " verified=True rentable=True
    rented=False") and as the object the listing types `search_query` as (show_autogroup.yaml):
    what vast-cli's vastai/api/query.py parse_query(string, {}, offers_fields, offers_alias,
    offers_mult) makes of it. Underscores stand for spaces in names, values stay strings but
    booleans and gpu_ram (GB x 1000)."""
    names = [gpu.replace(" ", "_") for gpu in gpus]
    if len(gpus) == 1:
        gpu_text, gpu_query = f"gpu_name={names[0]}", {"eq": gpus[0]}
    else:
        gpu_text, gpu_query = f"gpu_name in [{','.join(names)}]", {"in": list(gpus)}
    disk = f"{disk_space:g}"
    text = (
        f"{gpu_text} num_gpus={num_gpus} gpu_ram>={gpu_ram} disk_space>={disk}"
        " verified=True rentable=True rented=False"
    )
    query = {
        "gpu_name": gpu_query,
        "num_gpus": {"eq": str(num_gpus)},
        "gpu_ram": {"gte": gpu_ram * 1000.0},
        "disk_space": {"gte": disk},
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
    }
    return text, query


def profile() -> dict[str, Any]:
    """The account fields `vastai show user` prints (vastai/cli/display.py user_fields) beyond
    show_user.yaml's, and `host_agreement_accepted`, which the CLI reads to tell a host from a
    client (vastai/cli/util.py detect_role). Personal data, as a real record holds: the
    exporter keeps none of it."""
    return {
        "fullname": "Demo User",
        "user": "demo",
        "email_verified": True,
        "paypal_email": "",
        "billaddress_line1": "1 Example Street",
        "billaddress_line2": "",
        "billaddress_city": "Springfield",
        "billaddress_zip": "00000",
        "billaddress_country": "US",
        "last4": "4242",
        "has_billing": True,
        "has_payout": False,
        "billing_creditonly": False,
        "balance_threshold": 50.0,
        "balance_threshold_enabled": True,
        "billed_expected": 0.0,
        "billed_verified": 0.0,
        "paid_expected": 0.0,
        "paid_verified": 0.0,
        "got_signup_credit": True,
        "password_resettable": True,
        "host_agreement_accepted": False,
    }
