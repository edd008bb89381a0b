"""The baseline of bench_scrape.py: a Vast exporter written the usual way.

One prometheus-client `Gauge` per worker field, `.labels(...).set(...)` per worker, served by
`start_http_server`, which walks and renders every series on every scrape (and gzips on request).
It polls each endpoint once at start, which is all a scrape benchmark needs; with `--interval` it
polls them all, `--concurrency` at a time in threads, at start and then every interval, setting
the gauges from each answer (bench_memory.py measures it so). Metric names, HELP texts and labels
are the exporter's own, so the worker series of the two are alike byte for byte (the exporter adds
its per-target families, the baseline prometheus-client's process metrics).

    VAST_API_KEY=... python benchmarks/baseline_exporter.py --api-url URL --endpoints N
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client import Gauge, start_http_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.fields import WORKER_FIELDS
from exporter.metrics import STATUS_HELP, WORKER_FAMILIES
from exporter.worker_families import WORKER_LABELS

HELP = dict(WORKER_FAMILIES)
# API field -> (gauge, conversion to the exported unit)
GAUGES = {
    field.api: (
        Gauge(f"vastai_worker_{field.metric}", HELP[field.metric], WORKER_LABELS),
        field.convert,
    )
    for field in WORKER_FIELDS
}
STATUS = Gauge("vastai_worker_status", STATUS_HELP, [*WORKER_LABELS, "status"])


def fetch_workers(api_url: str, api_key: str, endpoint_id: int) -> list[dict[str, Any]]:
    """POST /get_endpoint_workers/ for one endpoint; either response shape."""
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/get_endpoint_workers/",
        data=json.dumps({"id": endpoint_id}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    return payload["workers"] if isinstance(payload, dict) else payload


def export(endpoint_id: int, workers: list[dict[str, Any]]) -> None:
    """Set one labelled child per field per worker, as most exporters do."""
    name = f"endpoint-{endpoint_id}"  # as benchmarks/common.py names the configured endpoints
    for item in workers:
        labels = (str(endpoint_id), name, "", str(item["id"]))
        for field, (gauge, convert) in GAUGES.items():
            value = convert(item.get(field))
            if value is not None:
                gauge.labels(*labels).set(value)
        status = item.get("status")
        if isinstance(status, str) and status.strip():
            STATUS.labels(*labels, status.strip().lower()).set(1)


def poll_round(pool: ThreadPoolExecutor, api_url: str, api_key: str, ids: list[int]) -> None:
    for _ in pool.map(lambda i: export(i, fetch_workers(api_url, api_key, i)), ids):
        pass


def poll_forever(
    pool: ThreadPoolExecutor, api_url: str, api_key: str, ids: list[int], interval: float
) -> None:
    """Every `interval` seconds from the start of the last round, poll every endpoint again."""
    while True:
        started = time.monotonic()
        poll_round(pool, api_url, api_key, ids)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--endpoints", type=int, required=True, help="how many endpoints")
    parser.add_argument("--first-id", type=int, default=4001, help="id of the first endpoint")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds; 0 polls once")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="polls at once, with --interval"
    )
    args = parser.parse_args()
    # Nothing to clean up: Ctrl-C, like SIGTERM, ends it at once, even in the middle of a render.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    api_key = os.environ["VAST_API_KEY"]
    ids = list(range(args.first_id, args.first_id + args.endpoints))
    pool = ThreadPoolExecutor(args.concurrency if args.interval > 0 else 1)
    started = time.monotonic()
    poll_round(pool, args.api_url, api_key, ids)
    server, _ = start_http_server(args.port, addr="127.0.0.1")
    print(
        f"ready port={server.server_port} first_round={time.monotonic() - started:.3f}", flush=True
    )
    if args.interval > 0:
        poll = (pool, args.api_url, api_key, ids, args.interval)
        threading.Thread(target=poll_forever, args=poll, daemon=True).start()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
