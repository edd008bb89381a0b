"""Where the exporter's memory goes at N workers, measured in process with tracemalloc.

The fleet of bench_memory.py (200 endpoints) is serialized as the fake Vast API sends it, then
taken through the exporter's own steps, each measured as the Python heap it adds (tracemalloc,
which sees every allocation Python makes, but not the allocator's own overhead or fragmentation):

1. the parsed worker lists, as the scheduler holds them (one TargetState per endpoint);
2. the snapshot merging them (one row per worker), built at each render;
3. the exposition held between renders, and the transient peak of rendering it;
4. a second poll round and render while the first are still held (a swap), its peak.

With `--instances` every worker also has an instance in the instance read's view (parsed before
the measurement starts, as the read holds it between reads), joined at each render.

It also walks the parsed lists and the snapshot (its views included) and sums the size of every
object they reach, by type (sys.getsizeof, each object counted once): what a worker costs, kind
by kind.

    python benchmarks/memory_breakdown.py [--workers 10000] [--endpoints 200] [--instances]
"""

from __future__ import annotations

import argparse
import array
import collections
import gc
import json
import sys
import time
import tracemalloc
import types

from common import endpoint_ids, endpoint_name, fleet, fleet_instances

from exporter.config import Target
from exporter.exposition import build_exposition
from exporter.metrics import TargetState, View, build_snapshot
from exporter.parsing import parse_instance_page
from exporter.reads.instances import InstancesView
from exporter.vast import parse_body

MB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--top", type=int, default=8, help="object types listed")
    parser.add_argument("--instances", action="store_true", help="every worker has an instance")
    return parser.parse_args()


def poll_round(bodies: dict[int, bytes]) -> tuple[TargetState, ...]:
    """Every endpoint's answer parsed, as the scheduler keeps it after a successful poll."""
    now, monotonic = time.time(), time.monotonic()
    return tuple(
        TargetState(
            Target("endpoint", endpoint_id, endpoint_name(endpoint_id)),
            polled=True,
            up=True,
            workers=tuple(map(tuple, parse_body(body))),  # as Scheduler keeps them
            last_success=now,
            last_success_monotonic=monotonic,
            last_duration=0.1,
        )
        for endpoint_id, body in bodies.items()
    )


def deep_sizes(root: object) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """(bytes, objects) by type name of everything `root` reaches, each object once; classes,
    functions and modules (shared, not data) are not followed."""
    sizes: collections.Counter[str] = collections.Counter()
    numbers: collections.Counter[str] = collections.Counter()
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type | types.FunctionType | types.ModuleType):
            continue
        seen.add(id(item))
        name = type(item).__name__
        sizes[name] += sys.getsizeof(item)
        numbers[name] += 1
        if isinstance(item, str | bytes | float | int | bool | array.array) or item is None:
            continue
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, tuple | list | set | frozenset):
            stack.extend(item)
        else:
            for slot in getattr(type(item), "__slots__", ()):
                if hasattr(item, slot):
                    stack.append(getattr(item, slot))
            if hasattr(item, "__dict__"):
                stack.append(vars(item))
    return sizes, numbers


def main() -> None:
    args = parse_args()
    plan = fleet(args.endpoints, args.workers)
    bodies = {i: json.dumps({"workers": plan[i]}).encode() for i in endpoint_ids(args.endpoints)}
    views: tuple[View, ...] = ()
    if args.instances:
        page = parse_instance_page({"success": True, "instances": fleet_instances(plan)})
        views = (InstancesView(page, (len(page) // 25, 1.0)),)
    del plan
    gc.collect()
    tracemalloc.start()
    rows: list[tuple[str, float]] = []

    def step(label: str, start: int) -> int:
        current = tracemalloc.get_traced_memory()[0]
        rows.append((label, (current - start) / MB))
        return current

    base = tracemalloc.get_traced_memory()[0]
    states = poll_round(bodies)
    mark = step("parsed worker lists (TargetStates)", base)
    snapshot = build_snapshot(states, 300, time.monotonic(), views=views)
    mark = step("snapshot (one row per worker)", mark)
    tracemalloc.reset_peak()
    exposition = build_exposition(snapshot)
    peak = tracemalloc.get_traced_memory()[1]
    rows.append(("render peak above the snapshot (transient)", (peak - mark) / MB))
    mark = step("exposition held between renders", mark)
    steady = mark
    tracemalloc.reset_peak()
    states2 = poll_round(bodies)
    snapshot2 = build_snapshot(states2, 300, time.monotonic(), views=views)
    exposition2 = build_exposition(snapshot2)
    peak = tracemalloc.get_traced_memory()[1]
    rows.append(("next round + render while the old are held: peak", (peak - base) / MB))
    del states, snapshot, exposition
    gc.collect()
    rows.append(("held after the swap", (tracemalloc.get_traced_memory()[0] - base) / MB))
    del states2, snapshot2, exposition2
    rows.append(("steady total (lists + snapshot + exposition)", (steady - base) / MB))
    tracemalloc.stop()
    states, snapshot = poll_round(bodies), None
    snapshot = build_snapshot(states, 300, time.monotonic(), views=views)
    sizes, numbers = deep_sizes((states, snapshot.rows, snapshot.views))

    with_instances = ", each with its instance" if args.instances else ""
    print(
        f"{args.endpoints} endpoints, {args.workers:,} workers{with_instances};"
        " Python heap (tracemalloc), MB"
    )
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value:8.1f}")
    print(f"objects the parsed lists and the snapshot reach, by type (top {args.top}):")
    for name, size in sizes.most_common(args.top):
        count = numbers[name]
        print(
            f"  {name:<14} {count:>9,} objects {size / MB:7.1f} MB"
            f"  ({size / args.workers:5.0f} bytes per worker)"
        )


if __name__ == "__main__":
    main()
