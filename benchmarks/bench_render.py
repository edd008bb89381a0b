"""What a render costs the render thread: a snapshot merged and its exposition written, in process.

The fleet of bench_memory.py (200 endpoints), each endpoint's answer parsed as the scheduler keeps
it, and with `--instances` every worker's instance from the v1 instance list (the view the
instance read adds). Each repetition times, on this one thread, what the render loop runs on the
render thread after a poll round: `build_snapshot` (one row per worker, views joined) and
`build_exposition` (OpenMetrics written and gzipped); then, apart, the same OpenMetrics written
without gzip (`render`: the renderer's own work, which gzip's fixed cost would hide). Times are
this thread's CPU time (what a render costs the one render thread and the GIL; on a shared
machine, wall time would measure the neighbours), medians and minimums over `--repeat` renders,
with the garbage collector on, as in production. Where other processes share the cores, even
CPU time varies by a fifth between runs; instruction counts do not: run it under
`valgrind --tool=cachegrind --cache-sim=no` with `--repeat 1` and `--repeat 3` (and
PYTHONHASHSEED=0), and halve the difference of the two `I refs`: one repetition's instructions.

    python benchmarks/bench_render.py [--workers 10000] [--repeat 30] [--instances]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

from common import endpoint_ids, fleet, fleet_instances, machine
from memory_breakdown import poll_round

from exporter.exposition import build_exposition, render
from exporter.metrics import View, build_snapshot
from exporter.parsing import parse_instance_page
from exporter.reads.instances import InstancesView


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="10000", help="comma-separated counts")
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=30, help="renders timed per count")
    parser.add_argument("--instances", action="store_true", help="every worker has an instance")
    args = parser.parse_args()
    args.workers = [int(part) for part in args.workers.split(",") if part.strip()]
    return args


def instances_view(plan: dict) -> InstancesView:
    """The instance read's view over every worker's instance, parsed as the read parses it."""
    page = parse_instance_page({"success": True, "instances": fleet_instances(plan)})
    return InstancesView(page, (len(page) // 25, 1.0))


def timed_renders(
    bodies: dict[int, bytes], views: tuple[View, ...], repeat: int
) -> tuple[list[float], list[float], list[float], int]:
    """(snapshot, OpenMetrics+gzip, OpenMetrics without gzip) CPU ms of each render, and the
    OpenMetrics' size."""
    states = poll_round(bodies)
    snapshots, gzipped, written = [], [], []
    size = 0
    for _ in range(repeat):
        started = time.thread_time()
        snapshot = build_snapshot(states, 300, time.monotonic(), views=views)
        built = time.thread_time()
        exposition = build_exposition(snapshot)
        rendered = time.thread_time()
        del exposition
        size = len(render(snapshot, openmetrics=True))
        done = time.thread_time()
        snapshots.append((built - started) * 1000)
        gzipped.append((rendered - built) * 1000)
        written.append((done - rendered) * 1000)
        del snapshot
    return snapshots, gzipped, written, size


def main() -> None:
    args = parse_args()
    print(machine())
    print(
        f"{args.endpoints} endpoints; CPU ms of {args.repeat} renders per count, GC on;"
        f" instances: {'every worker' if args.instances else 'none'}"
    )
    header = (
        f"{'workers':>8}  {'snapshot ms':>17}  {'OpenMetrics+gzip ms':>19}"
        f"  {'without gzip ms':>17}  {'render total ms':>15}  {'OpenMetrics bytes':>17}"
    )
    print(header)
    print("-" * len(header))
    for workers in args.workers:
        plan = fleet(args.endpoints, workers)
        views = (instances_view(plan),) if args.instances else ()
        ids = endpoint_ids(args.endpoints)
        bodies = {i: json.dumps({"workers": plan[i]}).encode() for i in ids}
        del plan
        gc.collect()
        snapshots, gzipped, written, size = timed_renders(bodies, views, args.repeat)
        totals = [a + b for a, b in zip(snapshots, gzipped, strict=True)]

        def figure(values: list[float]) -> str:
            return f"{statistics.median(values):7.1f} (min {min(values):5.1f})"

        print(
            f"{workers:>8,}  {figure(snapshots):>17}  {figure(gzipped):>19}"
            f"  {figure(written):>17}  {figure(totals):>15}  {size:>17,}"
        )
    print("render total = snapshot + OpenMetrics+gzip (what each render after a poll round costs)")


if __name__ == "__main__":
    main()
