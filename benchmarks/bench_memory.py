"""Memory while polls land: the exporter beside the naive baseline, both polled continuously.

For each worker count, a fake Vast API (in a child process, so its work never delays these
measurements) serves the fleet (200 endpoints, answers after `--delay` s) to two child processes
in turn, never both at once: the real exporter and
baseline_exporter.py (prometheus-client gauges set per poll, rendered per scrape), each polling
every endpoint every `--interval` at `--concurrency`, so polls land all the time, as in
production. After the first round, for `--duration` seconds:

- RSS (VmRSS) is read every 100 ms: median and max;
- /metrics is scraped with Prometheus's Accept headers and gzip, timed (the exporter every
  `--scrape-every` s; the baseline, whose scrape takes seconds, every `--baseline-scrape-every`),
  with aiohttp's client; the exporter also, half a period later, with a minimal HTTP/1.1 client
  (a blocking socket in a thread, one keep-alive connection): after an idle second aiohttp's
  client spends about 0.9 ms of its own per scrape of 1.3 MB, more than the exporter's handler,
  so the minimal client's figure is the exporter's (Prometheus' Go client is lean too);
- the exporter's /-/healthy is probed every 10 ms from a separate process: worst and p99.

The exporter's first round (first poll start to last poll end, from its own metrics) is set
against the ideal targets / concurrency x delay.

With `--instances` the fake also serves the v1 instance list (every worker's instance) and the
exporter reads it as fast as Vast allows (a page of 25 a second); sampling starts once its first
read has succeeded (workers / 25 seconds), so every worker's instance series are rendered.

    python benchmarks/bench_memory.py [--workers 1000,10000,50000] [--duration 60] [--instances]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import socket
import statistics
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from bench_poll import Prober, round_seconds
from bench_scrape import running_baseline
from common import (
    PROMETHEUS_HEADERS,
    ExporterProcess,
    TargetValues,
    endpoint_ids,
    exported_workers,
    fake_in_child,
    first_instance_read_seconds,
    instances_read,
    machine,
    percentile,
    rss_mb,
    run,
    running_exporter,
    target_values,
    wait_until,
)

SAMPLE_EVERY = 0.1
LOAD_TIMEOUT = 300.0
TARGET_WORKERS = {10_000: 100.0, 50_000: 350.0}  # max RSS targets of the issue, MB
SCRAPE_TARGET_MS = 2.0  # median /metrics at 10,000 workers
HEALTHY_TARGET_MS = 25.0
FIRST_ROUND_TARGET = 1.15


@dataclass(frozen=True)
class Result:
    workers: int
    who: str
    rss: list[float]
    scrapes_ms: list[float]  # aiohttp's client
    lean_ms: list[float]  # the minimal client (LeanScraper); the exporter only
    healthy_ms: list[float]
    first_round: float | None  # seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1000,10000,50000", help="comma-separated counts")
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds sampled")
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval, seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds each answer takes")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="exporter, seconds")
    parser.add_argument("--baseline-scrape-every", type=float, default=15.0, help="seconds")
    parser.add_argument("--no-baseline", action="store_true", help="measure the exporter only")
    parser.add_argument(
        "--instances", action="store_true", help="the exporter also reads the instance list"
    )
    args = parser.parse_args()
    args.workers = [int(part) for part in args.workers.split(",") if part.strip()]
    return args


async def scrape(session: aiohttp.ClientSession, url: str) -> tuple[float, bytes]:
    """One Prometheus-like scrape: seconds, and the body as sent (gzip)."""
    started = time.perf_counter()
    async with session.get(url + "/metrics", headers=PROMETHEUS_HEADERS) as response:
        response.raise_for_status()
        body = await response.read()
    return time.perf_counter() - started, body


class LeanScraper:
    """GET /metrics as Prometheus asks (OpenMetrics, gzip) over one keep-alive connection, with
    a blocking socket: the time from sending the request to the body's last byte, with as
    little client work as a scrape can take. Not for bodies sent chunked."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        lines = ["GET /metrics HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in PROMETHEUS_HEADERS.items()]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._sock: socket.socket | None = None

    def scrape(self) -> float:
        """Seconds one scrape took; the body is read whole and dropped."""
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=60)
        sock = self._sock
        started = time.perf_counter()
        sock.sendall(self._request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the exporter closed the connection")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status, *fields = head.decode("latin-1").split("\r\n")
        if status.split()[1] != "200":
            raise RuntimeError(f"/metrics answered {status!r}")
        headers = dict(field.lower().split(": ", 1) for field in fields)
        left = int(headers["content-length"]) - len(body)
        while left > 0:
            chunk = sock.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionError("the exporter closed the connection")
            left -= len(chunk)
        return time.perf_counter() - started

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


async def loaded(url: str, workers: int, targets: int, instances: bool = False) -> TargetValues:
    """Target samples once the exposition holds every worker of every target (and, with
    `instances`, once the instance list has been read)."""
    samples: TargetValues = {}
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def complete() -> bool:
            nonlocal samples
            _, body = await scrape(session, url)
            samples = target_values(gzip.decompress(body))
            polled = samples.get("vastai_target_last_success_timestamp_seconds", {})
            done = sum('kind="endpoint"' in labels for labels in polled)
            return done == targets and exported_workers(samples) == workers

        await wait_until(complete, LOAD_TIMEOUT, f"{workers:,} workers on /metrics", every=0.1)
        if instances:

            async def read() -> bool:
                _, body = await scrape(session, url)
                return instances_read(target_values(gzip.decompress(body)))

            timeout = LOAD_TIMEOUT + first_instance_read_seconds(workers)
            await wait_until(read, timeout, "a read of the instance list", every=1.0)
    return samples


async def sample(
    pid: int, url: str, duration: float, scrape_every: float, lean: bool = False
) -> tuple[list[float], list[float], list[float]]:
    """RSS every SAMPLE_EVERY and timed scrapes every `scrape_every` (with `lean`, also with
    LeanScraper half a period after each), for `duration` seconds: RSS, aiohttp scrapes, lean
    scrapes (ms)."""
    rss: list[float] = []
    scrapes: list[float] = []
    leans: list[float] = []
    deadline = time.monotonic() + duration

    async def every(period: float, action: Callable[[], Awaitable[None]], delay: float = 0) -> None:
        next_at = time.monotonic() + delay
        await asyncio.sleep(delay)
        while next_at < deadline:
            await action()
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    timeout = aiohttp.ClientTimeout(total=max(60.0, scrape_every * 4))
    scraper = LeanScraper(url)
    try:
        async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as session:

            async def read_rss() -> None:
                rss.append(rss_mb(pid))

            async def timed_scrape() -> None:
                seconds, _ = await scrape(session, url)
                scrapes.append(seconds * 1000)

            async def lean_scrape() -> None:
                leans.append(await asyncio.to_thread(scraper.scrape) * 1000)

            actions = [every(SAMPLE_EVERY, read_rss), every(scrape_every, timed_scrape)]
            if lean:
                actions.append(every(scrape_every, lean_scrape, scrape_every / 2))
            await asyncio.gather(*actions)
    finally:
        scraper.close()
    return rss, scrapes, leans


async def bench_exporter(workers: int, args: argparse.Namespace) -> Result:
    ids = endpoint_ids(args.endpoints)
    async with fake_in_child(args.endpoints, workers, args.delay, args.instances) as fake_url:
        log(f"{workers:,} workers: exporter, first round")
        prober = Prober()
        try:
            interval = f"{args.interval:g}s"
            async with running_exporter(
                fake_url, ids, interval, args.concurrency, args.instances
            ) as exporter:
                assert exporter.proc is not None
                samples = await loaded(exporter.base_url, workers, len(ids), args.instances)
                first = round_seconds(samples)
                log(f"{workers:,} workers: exporter, sampling for {args.duration:g} s")
                prober.aim(exporter.base_url + "/-/healthy", args.duration + 30)
                rss, scrapes, leans = await sample(
                    exporter.proc.pid, exporter.base_url, args.duration, args.scrape_every, True
                )
                healthy = [seconds * 1000 for _, seconds in await prober.latencies()]
                check_alive(exporter)
        finally:
            prober.close()
    return Result(workers, "exporter", rss, scrapes, leans, healthy, first)


def check_alive(exporter: ExporterProcess) -> None:
    assert exporter.proc is not None
    if exporter.proc.returncode is not None:
        raise RuntimeError(f"the exporter exited with {exporter.proc.returncode}")


async def bench_baseline(workers: int, args: argparse.Namespace) -> Result:
    options = ("--interval", f"{args.interval:g}", "--concurrency", str(args.concurrency))
    async with fake_in_child(args.endpoints, workers, args.delay) as fake_url:
        log(f"{workers:,} workers: baseline, first round")
        async with running_baseline(fake_url, args.endpoints, *options) as (url, pid):
            log(f"{workers:,} workers: baseline, sampling for {args.duration:g} s")
            rss, scrapes, _ = await sample(pid, url, args.duration, args.baseline_scrape_every)
    return Result(workers, "baseline", rss, scrapes, [], [], None)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(results: list[Result], args: argparse.Namespace) -> str:
    ideal = args.endpoints / args.concurrency * args.delay
    header = (
        f"{'workers':>8}  {'who':<8}  {'RSS median':>10}  {'RSS max':>8}  {'scrapes':>7}  "
        f"{'/metrics median':>15}  {'(aiohttp)':>12}  {'/-/healthy max':>14}  {'p99':>7}  "
        f"{'first round':>16}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        healthy = f"{max(r.healthy_ms):.1f} ms" if r.healthy_ms else ""
        p99 = f"{percentile(r.healthy_ms, 99):.1f} ms" if r.healthy_ms else ""
        first = f"{r.first_round:.2f} s ({r.first_round / ideal:.2f}x)" if r.first_round else ""
        lean = f"{statistics.median(r.lean_ms):.2f} ms" if r.lean_ms else ""
        lines.append(
            f"{r.workers:>8,}  {r.who:<8}  {statistics.median(r.rss):>7.1f} MB"
            f"  {max(r.rss):>5.1f} MB  {len(r.scrapes_ms):>7}  {lean:>15}"
            f"  {statistics.median(r.scrapes_ms):>9.2f} ms  {healthy:>14}  {p99:>7}  {first:>16}"
        )
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def targets(results: list[Result], args: argparse.Namespace) -> list[str]:
    lines = []
    ideal = args.endpoints / args.concurrency * args.delay
    for r in results:
        if r.who != "exporter":
            continue
        limit = TARGET_WORKERS.get(r.workers)
        if limit is not None:
            worst = max(r.rss)
            lines.append(
                f"target at {r.workers:,} workers: max RSS <= {limit:g} MB: {worst:.1f} MB,"
                f" {verdict(worst <= limit)}"
            )
        if r.workers == 10_000:
            median = statistics.median(r.lean_ms)
            with_aiohttp = statistics.median(r.scrapes_ms)
            healthy = max(r.healthy_ms)
            ratio = (r.first_round or 0) / ideal
            lines += [
                f"target at 10,000 workers: median /metrics < {SCRAPE_TARGET_MS:g} ms:"
                f" {median:.2f} ms, {verdict(median < SCRAPE_TARGET_MS)} (aiohttp's client:"
                f" {with_aiohttp:.2f} ms, {verdict(with_aiohttp < SCRAPE_TARGET_MS)})",
                f"target at 10,000 workers: worst /-/healthy < {HEALTHY_TARGET_MS:g} ms:"
                f" {healthy:.1f} ms, {verdict(healthy < HEALTHY_TARGET_MS)}",
                f"target at 10,000 workers: first round <= {FIRST_ROUND_TARGET:g}x ideal"
                f" ({ideal:.2f} s): {ratio:.2f}x, {verdict(ratio <= FIRST_ROUND_TARGET)}",
            ]
    return lines


async def main() -> None:
    args = parse_args()
    print(machine())
    print(
        f"{args.endpoints} endpoints polled every {args.interval:g} s at concurrency"
        f" {args.concurrency}, answers after {args.delay:g} s; RSS every {SAMPLE_EVERY:g} s for"
        f" {args.duration:g} s after the first round; scrapes as Prometheus (OpenMetrics, gzip)"
        f" every {args.scrape_every:g} s (baseline every {args.baseline_scrape_every:g} s)"
        + ("; the exporter reads the instance list (sampled after its first read)" * args.instances)
    )
    results: list[Result] = []
    for workers in args.workers:
        results.append(await bench_exporter(workers, args))
        if not args.no_baseline:
            results.append(await bench_baseline(workers, args))
    print(table(results, args))
    for line in targets(results, args):
        print(line)


if __name__ == "__main__":
    run(main())
