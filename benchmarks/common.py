"""Shared pieces of the benchmarks: fake data, child processes that always stop, /proc readings.

The benchmarks reuse the test harness (the fake Vast API and the exporter child process), so what
they measure is the same program the integration tests drive. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakevast import FakeVast, Reply, instance, worker  # noqa: E402
from tests.harness import (  # noqa: E402
    API_KEY,
    ExporterProcess,
    base_env,
    fast_config,
)

# What Prometheus 2.x/3.x sends on every scrape.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
FIRST_ENDPOINT_ID = 4001  # endpoint ids run from here; the baseline is told the same
FIRST_WORKER_ID = 18_400_000  # Vast instance ids are 8 digits nowadays
STATUSES = ("running", "loading", "model_loading", "stopped", "inactive", "error")
STATUS_WEIGHTS = (80, 5, 5, 4, 4, 2)
STOP_TIMEOUT = 5.0
GPUS = (("RTX 4090", 0.35), ("RTX 3090", 0.2), ("A100 SXM4", 1.1), ("H100 SXM", 2.2))
ACTUAL_STATUSES = ("running", "loading", "created", "exited")
ACTUAL_WEIGHTS = (85, 5, 5, 5)
GEOLOCATIONS = ("Sweden, SE", "Texas, US", "Quebec, CA", "Bavaria, DE", "Taiwan, TW")
# What an exporter started with instances=True reads: the v1 list at its fastest (Vast allows one
# page a second), 25 instances a page: a first read takes workers / 25 seconds.
INSTANCE_PAGE_SECONDS = 1.0
INSTANCES_PER_PAGE = 25


def endpoint_name(endpoint_id: int) -> str:
    """The name an endpoint is configured with; baseline_exporter.py labels the same way."""
    return f"endpoint-{endpoint_id}"


def endpoint_ids(count: int) -> list[int]:
    return list(range(FIRST_ENDPOINT_ID, FIRST_ENDPOINT_ID + count))


def machine() -> str:
    """CPU model, cores and Python version: figures mean little without them."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def realistic_worker(rng: random.Random, worker_id: int, now: float) -> dict[str, Any]:
    """A worker with varied figures, so numbers render and compress like a real fleet's."""
    measured = rng.uniform(20.0, 400.0)
    reliability = rng.uniform(0.9, 0.9999)
    return worker(
        worker_id,
        cur_load=round(rng.uniform(0.0, 400.0), 2),
        cur_load_rolling_avg=rng.uniform(0.0, 300.0),
        cur_perf=round(rng.uniform(0.0, 250.0), 3),
        disk_usage=round(rng.uniform(8.0, 200.0), 2),
        dlperf=rng.uniform(20.0, 400.0),
        loaded_at=now - rng.uniform(60.0, 14 * 86400.0),
        measured_perf=measured,
        perf=measured * reliability,
        reliability=reliability,
        reqs_working=rng.randint(0, 12),
        status=rng.choices(STATUSES, STATUS_WEIGHTS)[0],
    )


def fleet(endpoints: int, workers: int, seed: int = 1) -> dict[int, list[dict[str, Any]]]:
    """`workers` workers with unique ids spread over `endpoints` endpoints, keyed by endpoint id."""
    rng = random.Random(seed)
    now = time.time()
    ids = endpoint_ids(endpoints)
    plan: dict[int, list[dict[str, Any]]] = {endpoint_id: [] for endpoint_id in ids}
    for index in range(workers):
        plan[ids[index % endpoints]].append(realistic_worker(rng, FIRST_WORKER_ID + index, now))
    return plan


def realistic_instance(rng: random.Random, worker_id: int) -> dict[str, Any]:
    """The v1 instance list's record of a worker's instance, with varied hardware and figures."""
    gpu_name, price = rng.choice(GPUS)
    num_gpus = rng.choice((1, 1, 1, 2, 4, 8))
    return instance(
        worker_id,
        gpu_name,
        round(price * num_gpus * rng.uniform(0.8, 1.3) + 0.0021, 6),
        num_gpus=num_gpus,
        machine_id=rng.randint(1000, 60_000),
        geolocation=rng.choice(GEOLOCATIONS),
        actual_status=rng.choices(ACTUAL_STATUSES, ACTUAL_WEIGHTS)[0],
        gpu_util=round(rng.uniform(0.0, 100.0), 1),
        gpu_temp=round(rng.uniform(30.0, 85.0), 1),
        vmem_usage=round(rng.uniform(0.5, 24.0), 6),
        cpu_util=round(rng.uniform(0.0, 1.0), 4),
        mem_usage=round(rng.uniform(0.5, 15.0), 6),
    )


def fleet_instances(plan: dict[int, list[dict[str, Any]]], seed: int = 1) -> list[dict[str, Any]]:
    """An instance record for every worker of `plan` (the instance a worker runs on)."""
    rng = random.Random(seed + 1)
    return [realistic_instance(rng, item["id"]) for items in plan.values() for item in items]


def first_instance_read_seconds(workers: int) -> float:
    """How long an exporter's first read of the instance list takes at `workers` workers."""
    return math.ceil(workers / INSTANCES_PER_PAGE) * INSTANCE_PAGE_SECONDS


@contextlib.asynccontextmanager
async def running_fake(
    plan: dict[int, list[dict[str, Any]]], delay: float = 0.0, instances: bool = False
) -> AsyncIterator[FakeVast]:
    """The in-process fake Vast API serving `plan`, each answer after `delay` seconds, and with
    `instances` an instance list holding every worker's instance.

    Each answer is serialized once, up front: Vast's servers spend their CPU elsewhere, while
    this fake shares the machine with the exporter it measures (serializing 50 workers per
    answer took about a millisecond of this process's loop, and stretched every poll round)."""
    fake = await FakeVast(API_KEY).start()
    try:
        for endpoint_id, items in plan.items():
            body = json.dumps(items).encode()
            fake.set("endpoint", endpoint_id, Reply(body=body, delay=delay))
        if instances:
            fake.set_instances(fleet_instances(plan))
        yield fake
    finally:
        await fake.close()


@contextlib.asynccontextmanager
async def fake_in_child(
    endpoints: int, workers: int, delay: float, instances: bool = False
) -> AsyncIterator[str]:
    """`running_fake(fleet(endpoints, workers), delay, instances)` in a child process of its
    own, so that answering polls never delays what this process measures; yields its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *(str(endpoints), str(workers), str(delay), str(int(instances))),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the fake did not start (said {url!r})")
        yield url
    finally:
        await stop_child(proc)


async def serve_fake(endpoints: int, workers: int, delay: float, instances: bool) -> None:
    """The child of fake_in_child: prints the fake's URL, then serves until terminated."""
    async with running_fake(fleet(endpoints, workers), delay, instances) as fake:
        print(fake.url, flush=True)
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def running_exporter(
    api_url: str, ids: Sequence[int], interval: str, concurrency: int, instances: bool = False
) -> AsyncIterator[ExporterProcess]:
    """The real exporter (`python -m exporter`) polling `ids`, and with `instances` reading the
    instance list as fast as Vast allows; stopped however the block ends."""
    config = fast_config(
        api_url,
        vast={"timeout": "30s"},
        polling={"interval": interval, "concurrency": concurrency},
        endpoints=[{"id": i, "name": endpoint_name(i)} for i in ids],
    )
    if instances:
        page_interval = f"{INSTANCE_PAGE_SECONDS:g}s"
        config["vast"]["console_url"] = api_url
        config["instances"] = {"enabled": True, "interval": "60s", "page_interval": page_interval}
    async with exporter_with(config) as exporter:
        yield exporter


@contextlib.asynccontextmanager
async def exporter_with(config: dict[str, Any]) -> AsyncIterator[ExporterProcess]:
    """The real exporter (`python -m exporter`) on a config, stopped however the block ends."""
    with tempfile.TemporaryDirectory(prefix="vastai-bench-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = ["--config.file", str(path), "--web.listen-address", "127.0.0.1:0"]
        exporter = ExporterProcess(argv, base_env(VAST_API_KEY=API_KEY))
        try:
            await exporter.start()
            yield exporter
        finally:
            await stop_exporter(exporter)


async def stop_exporter(exporter: ExporterProcess) -> None:
    """SIGTERM and wait; SIGKILL if it does not go within STOP_TIMEOUT."""
    if exporter.proc is None:
        return
    try:
        await exporter.stop(timeout=STOP_TIMEOUT)
    except (TimeoutError, ProcessLookupError):
        exporter.kill()
        await exporter.proc.wait()


async def stop_child(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM and wait; SIGKILL if it does not go within STOP_TIMEOUT."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with few samples, p99 is simply the worst one."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


TARGET_LINE = re.compile(rb"^(vastai_target_\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)
TargetValues = dict[str, dict[str, float]]  # metric -> labels text -> value


def target_values(body: bytes) -> TargetValues:
    """The per-target samples of an exposition, found by a regex over its tail.

    A full parse takes seconds at 10,000 workers and even prometheus-client's parser on the tail
    stalls this loop for tens of ms, which would be charged to the exporter's latencies.
    """
    values: TargetValues = {}
    start = body.find(b"# HELP vastai_target_")
    for match in TARGET_LINE.finditer(body, max(start, 0)):
        metric, labels, value = (part.decode() for part in match.groups())
        values.setdefault(metric, {})[labels] = float(value)
    return values


async def scrape_targets(session: aiohttp.ClientSession, base_url: str) -> TargetValues:
    """One scrape as Prometheus asks (OpenMetrics, gzip: the form the exporter keeps rendered),
    reduced to the per-target samples."""
    async with session.get(base_url + "/metrics", headers=PROMETHEUS_HEADERS) as response:
        response.raise_for_status()
        return target_values(await response.read())


def exported_workers(values: TargetValues) -> int:
    return int(sum(values.get("vastai_target_workers", {}).values()))


def instances_read(values: TargetValues) -> bool:
    """Whether a read of the instance list has succeeded (its target has a last success)."""
    successes = values.get("vastai_target_last_success_timestamp_seconds", {})
    return any('kind="instances"' in labels for labels in successes)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.2
) -> None:
    """Call `check` until it is true; fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(every)


def run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, with Ctrl-C and SIGTERM cancelling `main` so its child processes are stopped.

    Ctrl-C also reaches the children, so `main` may fail on a vanished child before it sees the
    cancellation: after an interrupt, any failure is reported as the interruption it is.
    """

    async def guarded() -> bool:
        task = asyncio.ensure_future(main)
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            if not interrupted:  # a second Ctrl-C must not cut the cleanup short
                interrupted = True
                task.cancel()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt)
        try:
            await task
        except (Exception, asyncio.CancelledError):
            if not interrupted:
                raise
        return interrupted

    if asyncio.run(guarded()):
        print("interrupted; child processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # python common.py ENDPOINTS WORKERS DELAY INSTANCES: fake_in_child
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    count, workers, delay, instances = sys.argv[1:5]
    asyncio.run(serve_fake(int(count), int(workers), float(delay), instances == "1"))
