"""Series per worker, by default and with a lean `metrics.exclude`: what a Prometheus bill grows
with. Runs `vastai-exporter simulate` and the exporter as processes on 127.0.0.1 with the demo's
reads (discovery, the instance list, billing, deployments), waits until every worker's instance
has been read, and counts the series that carry a `worker_id` label, per worker, and the rest.

    .venv/bin/python benchmarks/series_budget.py
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import yaml

LEAN = [  # the README's lean example: no dashboard panel, rule or runbook uses these
    "vastai_worker_cpu_utilization_ratio",
    "vastai_worker_memory_*",
    "vastai_worker_new_load",
    "vastai_worker_loop_lag_max_seconds",
    "vastai_worker_warnings",
    "vastai_worker_created_timestamp_seconds",
    "vastai_worker_started_timestamp_seconds",
    "vastai_worker_instance_status",
    "vastai_worker_storage_price_dollars_per_hour",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(api_url: str, exclude: list[str]) -> dict:
    return {
        "vast": {"api_url": api_url, "console_url": api_url},
        "polling": {"interval": "2s"},
        "metrics": {"exclude": exclude},
        "discovery": {"enabled": True, "interval": "10s"},
        "instances": {"enabled": True, "interval": "10s"},
        "billing": {"enabled": True, "interval": "1m"},
        "deployments": {"enabled": True, "interval": "30s"},
    }


async def count(exporter_url: str, deadline: float) -> tuple[int, int, int, Counter[str]]:
    """(workers, series with worker_id, other series, worker series by family) once every
    worker has its instance info (or at the deadline)."""
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(exporter_url + "/metrics") as response:
                text = await response.text()
            samples = [line for line in text.splitlines() if line and not line.startswith("#")]
            per_worker = [line for line in samples if 'worker_id="' in line]
            workers = {re.search(r'worker_id="([^"]*)"', line)[1] for line in per_worker}
            with_instance = {
                re.search(r'worker_id="([^"]*)"', line)[1]
                for line in per_worker
                if line.startswith("vastai_worker_price_dollars_per_hour")
            }
            if (workers and with_instance >= workers) or time.monotonic() > deadline:
                families = Counter(line.split("{")[0] for line in per_worker)
                return len(workers), len(per_worker), len(samples) - len(per_worker), families
            await asyncio.sleep(1)


async def measure(exclude: list[str], timeout: float) -> tuple[int, int, int, Counter[str]]:
    sim_port, port = free_port(), free_port()
    exe = [sys.executable, "-m", "exporter"]
    simulator = await asyncio.create_subprocess_exec(
        *exe, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--no-flaky",
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(yaml.safe_dump(config(f"http://127.0.0.1:{sim_port}", exclude)))
        exporter = await asyncio.create_subprocess_exec(
            *exe, "--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}",
            env={"VAST_API_KEY": "series-budget"}, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.sleep(2)
            return await count(f"http://127.0.0.1:{port}", time.monotonic() + timeout)
        finally:
            for process in (exporter, simulator):
                process.terminate()
                await process.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    for name, exclude in (("default", []), ("lean", LEAN)):
        workers, per_worker, other, families = await measure(exclude, args.timeout)
        print(
            f"{name:8} workers={workers} series with worker_id={per_worker} "
            f"({per_worker / max(workers, 1):.1f} per worker, {len(families)} families) "
            f"other series={other}"
        )
    print(f"lean: metrics.exclude = {LEAN}")


if __name__ == "__main__":
    asyncio.run(main())
