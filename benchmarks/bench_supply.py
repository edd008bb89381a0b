"""The supply read at scale: 10,000 workers in 500 worker groups sharing 20 distinct queries.

A fake Vast API (in a child process, so its work never delays these measurements) lists 50
endpoints and 500 worker groups of 20 workers each (answers after `--delay` s); group i asks
query i mod 20 (strings, lists and objects, as show_autogroup.yaml allows), searched over a
marketplace of 600 offers (sim/market.py, the simulator's). The real exporter discovers the
groups and polls them every `--interval` at `--concurrency`, so polls land all the time, with
the supply read on (interval 1m, 100 offers a search): 20 searches 6 s apart need about 2
minutes, longer than the interval, so rounds run back to back and the log must say so once.

For `--duration` seconds after the first poll round:

- RSS (VmRSS) every 100 ms: median and max, against bench_memory's target at 10,000 workers
  (max RSS <= 100 MB);
- /metrics as Prometheus asks (OpenMetrics, gzip), timed every `--scrape-every` s with
  bench_memory's minimal HTTP/1.1 client: median, against its target (< 2 ms);
- the offer searches the fake received, their spacing, and how often the log says that rounds
  run back to back.

With `--compare` the same run without the supply read comes first, for the difference.

    python benchmarks/bench_supply.py [--duration 200] [--compare]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import itertools
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from bench_memory import SCRAPE_TARGET_MS, TARGET_WORKERS, sample
from common import (
    API_KEY,
    ROOT,
    ExporterProcess,
    exporter_with,
    fast_config,
    machine,
    realistic_worker,
    run,
    stop_child,
    target_values,
    wait_until,
)

from exporter.sim import market
from exporter.sim.paths import BUNDLES
from tests.fakevast import FakeVast, Reply, endpoint, worker_group

WORKERS, GROUPS, ENDPOINTS, QUERIES = 10_000, 500, 50, 20
FIRST_GROUP_ID, FIRST_ENDPOINT_ID, FIRST_WORKER_ID = 60_001, 5_001, 19_000_000
GPU_NAMES = [model.name.replace(" ", "_") for model in market.MODELS]


def query(index: int) -> Any:
    """The index-th of the distinct queries, in the three forms a search_query takes."""
    gpu, size = GPU_NAMES[index % len(GPU_NAMES)], 1 + index // len(GPU_NAMES)
    if index % 3 == 0:
        return {"gpu_name": {"eq": gpu.replace("_", " ")}, "num_gpus": {"gte": size}}
    if index % 3 == 1:
        return [f"gpu_name={gpu}", f"num_gpus>={size}", "reliability>0.95"]
    return f"gpu_name={gpu} num_gpus>={size} dph<{40 + index} verified=True rented=False"


def account() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    endpoints = [endpoint(FIRST_ENDPOINT_ID + i, f"endpoint-{i}") for i in range(ENDPOINTS)]
    groups = [
        worker_group(
            FIRST_GROUP_ID + i,
            FIRST_ENDPOINT_ID + i % ENDPOINTS,
            f"endpoint-{i % ENDPOINTS}",
            query(i % QUERIES),
        )
        for i in range(GROUPS)
    ]
    return endpoints, groups


async def serve_fake(delay: float) -> None:
    """The fake's child process: prints its URL, then serves until terminated."""
    import random

    rng = random.Random(1)
    now = time.time()
    fake = await FakeVast(API_KEY).start()
    fake.set_account(*account())
    fake.offer_records = market.offers(seed=1, per_size=30)
    per_group = WORKERS // GROUPS
    for index in range(GROUPS):
        first = FIRST_WORKER_ID + index * per_group
        items = [realistic_worker(rng, first + n, now) for n in range(per_group)]
        fake.set(
            "worker_group",
            FIRST_GROUP_ID + index,
            Reply(body=json.dumps(items).encode(), delay=delay),
        )
    fake.requests = _Kept(BUNDLES)  # only the searches are kept: the polls would pile up
    print(fake.url, flush=True)
    await asyncio.Event().wait()


class _Kept(list):  # type: ignore[type-arg]
    """A request log that keeps the requests of one path only, and prints each as it comes."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def append(self, request: Any) -> None:
        if request.path == self.path:
            super().append(request)
            print(f"search {time.monotonic():.3f}", flush=True)


@dataclass
class Result:
    supply: bool
    rss: list[float]
    lean_ms: list[float]
    searches: list[float]  # monotonic seconds of each search the fake received
    back_to_back_lines: int
    offers_series: int


@contextlib.asynccontextmanager
async def fake_child(delay: float) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-fake", str(delay), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 300)).decode().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the fake did not start (said {url!r})")
        yield url, proc
    finally:
        await stop_child(proc)


async def searches_of(proc: asyncio.subprocess.Process, into: list[float]) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        into.append(float(line.split()[1]))


@contextlib.asynccontextmanager
async def exporter_on(
    url: str, args: argparse.Namespace, supply: bool
) -> AsyncIterator[ExporterProcess]:
    config = fast_config(
        url,
        vast={"timeout": "30s", "console_url": url},
        polling={"interval": f"{args.interval:g}s", "concurrency": args.concurrency},
        discovery={"enabled": True, "interval": "5m"},
        supply={"enabled": supply, "interval": "1m", "max_offers": 100},
    )
    async with exporter_with(config) as exporter:
        yield exporter


async def first_round(base_url: str) -> None:
    """Until every discovered group has been polled and all workers are on /metrics."""
    async with aiohttp.ClientSession() as session:

        async def complete() -> bool:
            async with session.get(base_url + "/metrics") as response:
                values = target_values(await response.read())
            workers = sum(values.get("vastai_target_workers", {}).values())
            return workers == WORKERS

        await wait_until(complete, 600, f"{WORKERS:,} workers on /metrics", every=0.5)


async def offers_series(base_url: str) -> int:
    headers = {"Accept-Encoding": "gzip"}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(base_url + "/metrics", headers=headers) as response,
    ):
        body = gzip.decompress(await response.read())
    return body.count(b"\nvastai_worker_group_offers{")


async def bench(args: argparse.Namespace, supply: bool) -> Result:
    searches: list[float] = []
    async with fake_child(args.delay) as (url, proc):
        reader = asyncio.create_task(searches_of(proc, searches))
        async with exporter_on(url, args, supply) as exporter:
            assert exporter.proc is not None
            log(f"supply {'on' if supply else 'off'}: first round")
            await first_round(exporter.base_url)
            log(f"supply {'on' if supply else 'off'}: sampling for {args.duration:g} s")
            rss, _, leans = await sample(
                exporter.proc.pid, exporter.base_url, args.duration, args.scrape_every, True
            )
            series = await offers_series(exporter.base_url)
            lines = exporter.log.count("rounds run back to back")
        reader.cancel()
    return Result(supply, rss, leans, searches, lines, series)


def report(result: Result) -> list[str]:
    rss_limit = TARGET_WORKERS[WORKERS]
    worst = max(result.rss)
    lean = statistics.median(result.lean_ms)
    p90 = statistics.quantiles(result.lean_ms, n=10)[-1]
    who = "on " if result.supply else "off"
    lines = [
        f"supply {who}: RSS median {statistics.median(result.rss):.1f} MB, max {worst:.1f} MB"
        f" (target <= {rss_limit:g} MB: {verdict(worst <= rss_limit)}); /metrics median"
        f" {lean:.2f} ms, p90 {p90:.2f} ms over {len(result.lean_ms)} scrapes (target <"
        f" {SCRAPE_TARGET_MS:g} ms: {verdict(lean < SCRAPE_TARGET_MS)})",
    ]
    if result.supply:
        gaps = [b - a for a, b in itertools.pairwise(result.searches)]
        lines.append(
            f"  searches: {len(result.searches)} ({QUERIES} distinct queries for {GROUPS} groups),"
            f" gaps min {min(gaps):.2f} s, median {statistics.median(gaps):.2f} s, max"
            f" {max(gaps):.2f} s; groups with offers series: {result.offers_series};"
            f" 'rounds run back to back' logged {result.back_to_back_lines} time(s)"
        )
    return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=200.0, help="seconds sampled")
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval, seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds each answer takes")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds")
    parser.add_argument("--compare", action="store_true", help="first without the supply read")
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    print(machine())
    print(
        f"{WORKERS:,} workers in {GROUPS} discovered worker groups of {ENDPOINTS} endpoints,"
        f" polled every {args.interval:g} s at concurrency {args.concurrency}, answers after"
        f" {args.delay:g} s; supply every 1m, {QUERIES} distinct queries;"
        f" sampled {args.duration:g} s"
    )
    results = [await bench(args, False)] if args.compare else []
    results.append(await bench(args, True))
    for result in results:
        for line in report(result):
            print(line)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-fake"]:
        asyncio.run(serve_fake(float(sys.argv[2])))
    else:
        sys.path.insert(0, str(ROOT))
        run(main())
