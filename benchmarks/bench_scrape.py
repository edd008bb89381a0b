"""What a Prometheus scrape of /metrics costs: the exporter's cached bytes against the usual way.

For each worker count, an in-process fake Vast API serves the same fleet to two child processes in
turn: the real exporter (interval 30s, concurrency 16) and baseline_exporter.py (prometheus-client
gauges rendered on every scrape). Each is scraped with Prometheus's own Accept headers and gzip
over one keep-alive connection; the timer covers the whole (compressed) transfer, not our gunzip.
Only one of the two runs at a time, so they never compete for the CPU.

With `--instances` the exporter also reads the fake's instance list (every worker's instance, a
page of 25 a second) and is scraped once that first read has succeeded (workers / 25 seconds);
the baseline knows nothing of instances.

    python benchmarks/bench_scrape.py [--workers 1000,10000,50000] [--endpoints 200] [--instances]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from common import (
    API_KEY,
    FIRST_ENDPOINT_ID,
    PROMETHEUS_HEADERS,
    ExporterProcess,
    base_env,
    endpoint_ids,
    exported_workers,
    first_instance_read_seconds,
    fleet,
    instances_read,
    machine,
    percentile,
    rss_mb,
    run,
    running_exporter,
    running_fake,
    scrape_targets,
    stop_child,
    wait_until,
)

from exporter.sim.paths import ENDPOINT_WORKERS

BASELINE = Path(__file__).with_name("baseline_exporter.py")
BASELINE_WORKER_SCRAPES = 250_000  # baseline scrapes x workers cap: 5 scrapes at 50,000 workers
LOAD_TIMEOUT = 300.0
TARGET_WORKERS = 10_000  # the targets are stated at this size
SPEEDUP_TARGET = 100.0
RSS_TARGET_MB = 150.0


@dataclass(frozen=True)
class Result:
    workers: int
    who: str
    scrapes: int
    median_ms: float
    p99_ms: float
    gzip_bytes: int
    raw_bytes: int
    status_series: int
    rss_mb: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1000,10000,50000", help="comma-separated counts")
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes of the exporter")
    parser.add_argument("--baseline-scrapes", type=int, default=20, help="scrapes of the baseline")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap per series")
    parser.add_argument(
        "--instances", action="store_true", help="the exporter also reads the instance list"
    )
    args = parser.parse_args()
    args.workers = [int(part) for part in args.workers.split(",") if part.strip()]
    return args


async def timed_scrapes(
    base_url: str, count: int, max_seconds: float
) -> tuple[list[float], bytes, str | None]:
    """Scrape `count` times (or for `max_seconds`); latencies and the last body as sent."""
    latencies: list[float] = []
    body, encoding = b"", None
    timeout = aiohttp.ClientTimeout(total=max_seconds + 60)
    async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as session:
        deadline = time.monotonic() + max_seconds
        while len(latencies) < count and (not latencies or time.monotonic() < deadline):
            started = time.perf_counter()
            async with session.get(base_url + "/metrics", headers=PROMETHEUS_HEADERS) as response:
                response.raise_for_status()
                body = await response.read()
                encoding = response.headers.get("Content-Encoding")
            latencies.append(time.perf_counter() - started)
    return latencies, body, encoding


async def measure(
    workers: int, who: str, base_url: str, pid: int, count: int, cap: float
) -> Result:
    latencies, body, encoding = await timed_scrapes(base_url, count, cap)
    raw = gzip.decompress(body) if encoding == "gzip" else body
    return Result(
        workers=workers,
        who=who,
        scrapes=len(latencies),
        median_ms=statistics.median(latencies) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        gzip_bytes=len(body) if encoding == "gzip" else 0,
        raw_bytes=len(raw),
        status_series=raw.count(b"\nvastai_worker_status{"),
        rss_mb=rss_mb(pid),
    )


async def wait_loaded(exporter: ExporterProcess, workers: int, instances: bool = False) -> None:
    """Until /-/ready and the cached exposition holds every worker (and, with `instances`, a
    read of the instance list has succeeded)."""
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            async with session.get(exporter.base_url + "/-/ready") as response:
                return response.status == 200

        async def loaded() -> bool:
            return exported_workers(await scrape_targets(session, exporter.base_url)) == workers

        # The instance list is a target too: /-/ready waits for its first read.
        timeout = LOAD_TIMEOUT + (first_instance_read_seconds(workers) if instances else 0)
        await wait_until(ready, timeout, "/-/ready", every=1.0)
        await wait_until(loaded, LOAD_TIMEOUT, f"{workers} workers on /metrics", every=0.5)
        if instances:

            async def read() -> bool:
                return instances_read(await scrape_targets(session, exporter.base_url))

            await wait_until(read, timeout, "a read of the instance list", every=1.0)


@contextlib.asynccontextmanager
async def running_baseline(
    api_url: str, endpoints: int, *options: str
) -> AsyncIterator[tuple[str, int]]:
    """baseline_exporter.py as a child process: (base URL, pid) once it has loaded every worker.

    `options` are more of its command-line options (`--interval 5` polls continuously)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BASELINE),
        *("--api-url", api_url, "--endpoints", str(endpoints)),
        *("--first-id", str(FIRST_ENDPOINT_ID)),
        *options,
        env=base_env(VAST_API_KEY=API_KEY),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), LOAD_TIMEOUT)
        match = re.match(rb"ready port=(\d+)", line)
        if match is None:
            raise RuntimeError(f"baseline did not start (said {line!r})")
        yield f"http://127.0.0.1:{int(match.group(1))}", proc.pid
    finally:
        await stop_child(proc)


async def bench(workers: int, args: argparse.Namespace) -> list[Result]:
    """Exporter, then baseline, on the same fleet; notes a poll round that overlapped scrapes."""
    ids = endpoint_ids(args.endpoints)
    async with running_fake(fleet(args.endpoints, workers), instances=args.instances) as fake:
        log(f"{workers:,} workers: exporter loading")
        async with running_exporter(fake.url, ids, "30s", 16, args.instances) as exporter:
            assert exporter.proc is not None
            await wait_loaded(exporter, workers, args.instances)
            log(f"{workers:,} workers: exporter scrapes")
            ours = await measure(
                workers,
                "exporter",
                exporter.base_url,
                exporter.proc.pid,
                args.scrapes,
                args.max_seconds,
            )
        worker_polls = [r for r in fake.requests if r.path == ENDPOINT_WORKERS]
        if len(worker_polls) > len(ids):
            log(f"note: {len(worker_polls) - len(ids)} extra polls overlapped the exporter scrapes")
        polls = len(fake.requests)
        log(f"{workers:,} workers: baseline loading")
        async with running_baseline(fake.url, args.endpoints) as (base_url, pid):
            if len(fake.requests) - polls != len(ids):
                raise RuntimeError("the baseline did not poll every endpoint exactly once")
            count = min(args.baseline_scrapes, max(1, BASELINE_WORKER_SCRAPES // workers))
            log(f"{workers:,} workers: baseline scrapes ({count})")
            theirs = await measure(workers, "baseline", base_url, pid, count, args.max_seconds)
    return [ours, theirs]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(results: list[Result]) -> str:
    header = (
        f"{'workers':>8}  {'who':<8}  {'scrapes':>7}  {'median ms':>10}  {'p99 ms':>9}  "
        f"{'gzip bytes':>11}  {'raw bytes':>11}  {'RSS MB':>7}  {'speed-up':>8}"
    )
    lines = [header, "-" * len(header)]
    medians = {(r.workers, r.who): r.median_ms for r in results}
    for r in results:
        speedup = ""
        if r.who == "baseline" and (r.workers, "exporter") in medians:
            speedup = f"{r.median_ms / medians[(r.workers, 'exporter')]:,.0f}x"
        lines.append(
            f"{r.workers:>8,}  {r.who:<8}  {r.scrapes:>7}  {r.median_ms:>10.2f}  {r.p99_ms:>9.2f}  "
            f"{r.gzip_bytes:>11,}  {r.raw_bytes:>11,}  {r.rss_mb:>7.1f}  {speedup:>8}"
        )
    return "\n".join(lines)


def mismatches(results: list[Result]) -> list[str]:
    """Both sides must serve the same workers, or the comparison means nothing."""
    by_count: dict[int, set[int]] = {}
    for r in results:
        by_count.setdefault(r.workers, set()).add(r.status_series)
    return [
        f"{n:,} workers: status series differ {sorted(s)}"
        for n, s in by_count.items()
        if len(s) > 1
    ]


def targets(results: list[Result]) -> list[str]:
    """The issue's targets at 10,000 workers, next to what was measured."""
    found = {r.who: r for r in results if r.workers == TARGET_WORKERS}
    if set(found) != {"exporter", "baseline"}:
        return []
    ours, theirs = found["exporter"], found["baseline"]
    speedup = theirs.median_ms / ours.median_ms
    return [
        f"target at 10,000 workers: median >= {SPEEDUP_TARGET:g}x faster than the baseline:"
        f" {speedup:,.0f}x, {verdict(speedup >= SPEEDUP_TARGET)}",
        f"target at 10,000 workers: RSS <= {RSS_TARGET_MB:g} MB: {ours.rss_mb:.1f} MB,"
        f" {verdict(ours.rss_mb <= RSS_TARGET_MB)}",
    ]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


async def main() -> None:
    args = parse_args()
    print(machine())
    print(
        f"{args.endpoints} endpoints; exporter interval 30s, concurrency 16; "
        "scrapes with Prometheus's Accept (OpenMetrics first) and Accept-Encoding: gzip"
        + ("; the exporter reads the instance list" * args.instances)
    )
    results: list[Result] = []
    for workers in args.workers:
        results += await bench(workers, args)
    print(table(results))
    print("speed-up = baseline median / exporter median; RSS read after the scrapes")
    for line in targets(results):
        print(line)
    for problem in mismatches(results):
        print(f"WARNING: {problem}")


if __name__ == "__main__":
    run(main())
