"""Soak: run the exporter for minutes against a churning, faulty fake; watch memory and handles.

Every target answers with a failure form (all of them, in turn) about a third of the time, and
otherwise with its workers, a tenth of which are replaced by new ids at every answer, so worker
series come and go for the whole run. Two clients scrape /metrics every second. Every
`--sample-every` seconds the exporter's RSS, open file descriptors and series counts are printed;
a healthy exporter holds all of them flat.

    python benchmarks/soak.py [--minutes 10] [--targets 20] [--workers 50] [--interval 1s]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from common import (
    API_KEY,
    FIRST_WORKER_ID,
    ExporterProcess,
    FakeVast,
    Reply,
    endpoint_ids,
    machine,
    realistic_worker,
    rss_mb,
    run,
    running_exporter,
)

from tests.fakevast import FAILURES, failure, workers  # common.py puts the repository on sys.path

FAULT_SHARE = 0.33
CHURN_SHARE = 0.10
SCRAPE_EVERY = 1.0


@dataclass
class Scrapes:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def churning_target(rng: random.Random, ids: itertools.count, size: int) -> Callable[[], Reply]:
    """A target whose answers fail a third of the time and whose workers keep changing."""
    faults = itertools.cycle(
        [behaviour for behaviour, _ in FAILURES.values()] + [failure(200, [], delay=3.0)]
    )
    current = [next(ids) for _ in range(size)]

    def answer() -> Reply:
        if rng.random() < FAULT_SHARE:
            return next(faults)
        for index in rng.sample(range(size), max(1, int(size * CHURN_SHARE))):
            current[index] = next(ids)
        now = time.time()
        return workers(*(realistic_worker(rng, worker_id, now) for worker_id in current))

    return answer


async def scrape_loop(base_url: str, deadline: float, scrapes: Scrapes) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(base_url + "/metrics") as response:
                    body = await response.read()
                    good = response.status == 200 and body.count(b"\n") > 0
            except aiohttp.ClientError as exc:
                good, body = False, str(exc).encode()
            if good:
                scrapes.ok += 1
            else:
                scrapes.failed += 1
                scrapes.errors.append(body[:200].decode(errors="replace"))
            await asyncio.sleep(SCRAPE_EVERY)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def series_counts(base_url: str) -> tuple[int, int]:
    """(all samples, worker status series) in one plain-text scrape."""
    async with aiohttp.ClientSession() as session, session.get(base_url + "/metrics") as response:
        lines = (await response.read()).splitlines()
    samples = [line for line in lines if line and not line.startswith(b"#")]
    return len(samples), sum(line.startswith(b"vastai_worker_status{") for line in samples)


async def soak(args: argparse.Namespace) -> None:
    print(machine())
    print(
        f"{args.targets} targets x {args.workers} workers, interval {args.interval}, "
        f"{FAULT_SHARE:.0%} faulty answers, {CHURN_SHARE:.0%} of workers replaced per answer, "
        f"{args.minutes:g} min"
    )
    rng = random.Random(7)
    ids = itertools.count(FIRST_WORKER_ID)
    fake = await FakeVast(API_KEY).start()
    targets = endpoint_ids(args.targets)
    for endpoint_id in targets:
        fake.set("endpoint", endpoint_id, churning_target(rng, ids, args.workers))
    try:
        async with running_exporter(fake.url, targets, args.interval, concurrency=8) as exporter:
            await report(exporter, fake, args)
    finally:
        await fake.close()


async def report(exporter: ExporterProcess, fake: FakeVast, args: argparse.Namespace) -> None:
    assert exporter.proc is not None
    pid = exporter.proc.pid
    started = time.monotonic()
    deadline = started + args.minutes * 60
    scrapes = Scrapes()
    scrapers = [
        asyncio.create_task(scrape_loop(exporter.base_url, deadline, scrapes)) for _ in range(2)
    ]
    header = ("min", "RSS MB", "fds", "samples", "workers", "polls", "scrapes ok/failed")
    print("{:>6} {:>8} {:>5} {:>8} {:>8} {:>7} {:>18}".format(*header))
    rows = []
    while True:
        samples, worker_series = await series_counts(exporter.base_url)
        row = (rss_mb(pid), open_fds(pid), samples, worker_series)
        rows.append(row)
        elapsed = (time.monotonic() - started) / 60
        print(
            f"{elapsed:6.1f} {row[0]:8.1f} {row[1]:5d} {row[2]:8d} {row[3]:8d} "
            f"{len(fake.requests):7d} {scrapes.ok:>11d}/{scrapes.failed:<6d}",
            flush=True,
        )
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(args.sample_every, max(0.0, deadline - time.monotonic())))
    await asyncio.gather(*scrapers)
    summarize(rows, scrapes, len(fake.requests))


def summarize(rows: list[tuple[float, int, int, int]], scrapes: Scrapes, polls: int) -> None:
    settled = rows[1:] or rows  # the first sample is taken before the first renders settle
    rss = [row[0] for row in settled]
    fds = [row[1] for row in settled]
    workers = [row[3] for row in settled]
    print(
        f"RSS {rss[0]:.1f} -> {rss[-1]:.1f} MB (max {max(rss):.1f}); "
        f"fds {fds[0]} -> {fds[-1]} (max {max(fds)}); "
        f"worker series {min(workers)}..{max(workers)}; polls {polls}; "
        f"scrapes {scrapes.ok} ok, {scrapes.failed} failed"
    )
    for error in scrapes.errors[:3]:
        print(f"  failed scrape: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--workers", type=int, default=50, help="workers per target")
    parser.add_argument("--interval", default="1s", help="the exporter's polling interval")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between rows")
    run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
