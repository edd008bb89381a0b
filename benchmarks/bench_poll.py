"""How fast the exporter fans polls out, whether the loop stays responsive, and what a round costs.

The in-process fake Vast API answers every endpoint after `--delay` seconds. Two exporter runs:

1. `--interval` (20s) so the first round is alone: its duration from the exporter's own metrics
   (first poll start to last poll end) against the ideal targets / concurrency x delay, and
   /-/healthy probed every 10 ms, from another process, from the exporter's start line until
   that round is rendered, plus 2 s.
2. `--cpu-interval` (3s), unprobed: CPU time over `--rounds` rounds after the first, divided by the
   polls answered in that window, so the figure covers HTTP, JSON parsing and rendering.

    python benchmarks/bench_poll.py [--targets 200] [--delay 0.1] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType

import aiohttp
from common import (
    STOP_TIMEOUT,
    ExporterProcess,
    FakeVast,
    TargetValues,
    cpu_seconds,
    endpoint_ids,
    exported_workers,
    fleet,
    machine,
    percentile,
    run,
    running_exporter,
    running_fake,
    scrape_targets,
    wait_until,
)

PROBE_EVERY = 0.010
SETTLE = 2.0  # seconds probed after the round is rendered
ROUND_TIMEOUT = 60.0
FIRST_ROUND_TARGET = 1.15  # x ideal, from issue 17
HEALTHY_TARGET_MS = 25.0  # from issue 17


@dataclass(frozen=True)
class FirstRound:
    seconds: float
    cpu_seconds: float
    healthy_ms: list[float]
    worst_at: float  # seconds after the start line
    last_poll_at: float  # seconds after the start line
    rendered_at: float  # seconds after the start line


@dataclass(frozen=True)
class Steady:
    cpu_seconds: float
    rounds: float
    wall_seconds: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--workers-per-target", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds each answer takes")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--interval", type=float, default=20.0, help="run 1, seconds")
    parser.add_argument("--cpu-interval", type=float, default=3.0, help="run 2, seconds")
    parser.add_argument("--rounds", type=int, default=3, help="rounds measured in run 2")
    return parser.parse_args()


def probe(url: str, stop: EventType, seconds: float = ROUND_TIMEOUT) -> list[tuple[float, float]]:
    """(Unix time, latency) of a GET of `url` about every PROBE_EVERY s on one keep-alive
    connection, until `stop` (or `seconds`)."""

    async def loop() -> list[tuple[float, float]]:
        latencies: list[tuple[float, float]] = []
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if stop.is_set():
                    break
                at, started = time.time(), time.perf_counter()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        response.raise_for_status()
                except aiohttp.ClientConnectionError:
                    break  # the exporter is gone: the parent is stopping or has failed
                elapsed = time.perf_counter() - started
                latencies.append((at, elapsed))
                await asyncio.sleep(max(0.0, PROBE_EVERY - elapsed))
        return latencies

    return asyncio.run(loop())


def probe_child(conn: Connection, stop: EventType) -> None:
    """The prober's process: waits for the URL, probes, sends the latencies back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on Ctrl-C the parent stops it
    with contextlib.suppress(EOFError, OSError):  # the parent is gone
        url, seconds = conn.recv()
        conn.send(probe(url, stop, seconds))


class Prober:
    """Probes from a separate process, so stalls of this one's loop are not charged to the exporter.

    It is started before the exporter (spawning takes a while) and aimed at it once it listens.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._conn, child_conn = context.Pipe()
        self._proc = context.Process(target=probe_child, args=(child_conn, self._stop))
        self._proc.start()
        child_conn.close()  # so recv() sees EOF if the child dies

    def aim(self, url: str, seconds: float = ROUND_TIMEOUT) -> None:
        """Probe `url` until `latencies()` is called, for `seconds` at most."""
        self._conn.send((url, seconds))

    async def latencies(self) -> list[tuple[float, float]]:
        self._stop.set()
        return await asyncio.wait_for(asyncio.to_thread(self._conn.recv), 15)

    def close(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join(STOP_TIMEOUT)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()


async def wait_round(exporter: ExporterProcess, targets: int, workers: int) -> TargetValues:
    """Target samples once every target succeeded and the render holds every worker."""
    samples: TargetValues = {}
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            async with session.get(exporter.base_url + "/-/ready") as response:
                return response.status == 200

        async def rendered() -> bool:
            nonlocal samples
            samples = await scrape_targets(session, exporter.base_url)
            done = len(samples.get("vastai_target_last_success_timestamp_seconds", {}))
            return done == targets and exported_workers(samples) == workers

        await wait_until(ready, ROUND_TIMEOUT, "/-/ready", every=0.05)
        await wait_until(rendered, ROUND_TIMEOUT, "the first round on /metrics", every=0.1)
    return samples


def round_seconds(samples: TargetValues) -> float:
    """Last poll end minus first poll start, from last_success and poll_duration per target."""
    ends = samples["vastai_target_last_success_timestamp_seconds"]
    durations = samples["vastai_target_poll_duration_seconds"]
    starts = [end - durations[labels] for labels, end in ends.items()]
    return max(ends.values()) - min(starts)


async def first_round(fake: FakeVast, args: argparse.Namespace) -> FirstRound:
    """Run 1: round duration, CPU from the start line to the rendered round, /-/healthy."""
    ids = endpoint_ids(args.targets)
    workers = args.targets * args.workers_per_target
    prober = Prober()
    try:
        async with running_exporter(fake.url, ids, f"{args.interval:g}s", args.concurrency) as exp:
            assert exp.proc is not None
            cpu_at_start, started = cpu_seconds(exp.proc.pid), time.time()
            prober.aim(exp.base_url + "/-/healthy")
            samples = await wait_round(exp, args.targets, workers)
            cpu, rendered = cpu_seconds(exp.proc.pid) - cpu_at_start, time.time()
            await asyncio.sleep(SETTLE)
            healthy = await prober.latencies()
    finally:
        prober.close()
    worst_at = max(healthy, key=lambda probe: probe[1])[0]
    return FirstRound(
        round_seconds(samples),
        cpu,
        [latency * 1000 for _, latency in healthy],
        worst_at - started,
        max(samples["vastai_target_last_success_timestamp_seconds"].values()) - started,
        rendered - started,
    )


def answered(fake: FakeVast) -> int:
    return len(fake.requests) - fake.in_flight


async def steady(fake: FakeVast, args: argparse.Namespace) -> Steady:
    """Run 2: CPU per round over `rounds` short-interval rounds, counted by answered polls."""
    ids = endpoint_ids(args.targets)
    workers = args.targets * args.workers_per_target
    interval = args.cpu_interval
    async with running_exporter(fake.url, ids, f"{interval:g}s", args.concurrency) as exp:
        assert exp.proc is not None
        await wait_round(exp, args.targets, workers)
        cpu0, polls0, wall0 = cpu_seconds(exp.proc.pid), answered(fake), time.monotonic()
        await asyncio.sleep(args.rounds * interval)
        cpu1, polls1, wall1 = cpu_seconds(exp.proc.pid), answered(fake), time.monotonic()
    return Steady(cpu1 - cpu0, (polls1 - polls0) / args.targets, wall1 - wall0)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(args: argparse.Namespace, first: FirstRound, cpu: Steady) -> None:
    ideal = args.targets / args.concurrency * args.delay
    ratio = first.seconds / ideal
    worst, p99 = max(first.healthy_ms), percentile(first.healthy_ms, 99)
    per_round = cpu.cpu_seconds / cpu.rounds
    print(
        f"first poll round    {first.seconds:6.2f} s   ideal {args.targets} / {args.concurrency}"
        f" x {args.delay:g} s = {ideal:.2f} s, ratio {ratio:.2f}"
        f"   target <= {FIRST_ROUND_TARGET:g}: {verdict(ratio <= FIRST_ROUND_TARGET)}"
    )
    print(
        f"/-/healthy          max {worst:.1f} ms, p99 {p99:.1f} ms over {len(first.healthy_ms)}"
        f" probes   target max < {HEALTHY_TARGET_MS:g} ms: {verdict(worst < HEALTHY_TARGET_MS)}"
    )
    print(
        f"  (probed from a separate process from the start line; last poll answered at"
        f" +{first.last_poll_at:.2f} s, all workers first seen on /metrics at"
        f" +{first.rendered_at:.2f} s, probed until {SETTLE:g} s later; worst probe began at"
        f" +{first.worst_at:.2f} s)"
    )
    print(
        f"CPU, first round    {first.cpu_seconds:6.2f} s   (start line to round rendered, alone;"
        " includes serving the probes and our /metrics checks)"
    )
    print(
        f"CPU per poll round  {per_round:6.2f} s   no target in the issue; {cpu.rounds:.2f} rounds"
        f" at interval {args.cpu_interval:g}s in {cpu.wall_seconds:.1f} s,"
        f" {100 * cpu.cpu_seconds / cpu.wall_seconds:.0f}% of one core"
    )
    print(
        "  (utime+stime delta of the exporter over the window / polls answered in it / targets;"
        " covers HTTP, JSON parsing, snapshots and debounced renders, unscraped)"
    )


async def main() -> None:
    args = parse_args()
    workers = args.targets * args.workers_per_target
    print(machine())
    print(
        f"{args.targets} endpoints x {args.workers_per_target} workers = {workers:,} workers;"
        f" fake answers after {args.delay:g} s; concurrency {args.concurrency}"
    )
    plan = fleet(args.targets, workers)
    async with running_fake(plan, delay=args.delay) as fake:
        first = await first_round(fake, args)
    async with running_fake(plan, delay=args.delay) as fake:
        cpu = await steady(fake, args)
    report(args, first, cpu)


if __name__ == "__main__":
    run(main())
