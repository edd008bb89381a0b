"""The fast renderer against prometheus-client's own, and content negotiation."""

from __future__ import annotations

import asyncio
import gc
import gzip
import random
import re
import resource
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.utils import floatToGoString

from exporter.config import Target
from exporter.exposition import (
    RENDERER,
    TEXT_TYPE,
    Body,
    RuntimeFamilies,
    build_exposition,
    go_float,
    render,
    render_simple,
    wants_openmetrics,
)
from exporter.metrics import Snapshot, View, build_snapshot
from exporter.parsing import Instance, parse_workers_payload
from exporter.reads.instances import InstancesView
from exporter.render_loop import MetricsCache
from exporter.scheduler import TargetState
from exporter.worker_families import WORKER_LABELS, LabelOrder, WorkerFamily, WorkerSeries

from .fakevast import worker
from .reference import reference

NOW = 1_800_000_000.0
ODD = 'quote " back \\ slash \n newline ünïcode'


def snapshot() -> Snapshot:
    return build_snapshot(states(), 300, NOW, views=[InstancesView(INSTANCES, (3, 2.5))])


def states(load: float = 150.0) -> list[TargetState]:
    """Odd labels and values over an endpoint, a group sharing its workers, a failed and an
    unpolled target; `load` is every worker's cur_load but the first's (to tell renders apart)."""
    endpoint = Target("endpoint", 1, ODD, 1, ODD)
    group = Target("worker_group", 2, "g", 1, ODD)
    lone = Target("worker_group", 3)
    items = [
        worker(10, status=ODD, cur_load=float("nan"), perf=float("inf"), dlperf=-1e-300),
        worker(11, status=None, reliability="0.5", disk_usage=1e22, loaded_at=1724275993.997),
        worker(12, cur_perf=123456789012, reqs_working=0, cur_load=load),
        *(worker(100 + i, cur_load=load, cur_perf=i / 7, status="running") for i in range(200)),
    ]

    def polled(target: Target, up: bool, raw: list, duration: float) -> TargetState:
        return TargetState(
            target,
            polled=True,
            up=up,
            workers=tuple(parse_workers_payload(raw)),
            last_success=NOW if up else None,
            last_success_monotonic=NOW if up else None,
            last_duration=duration,
            last_error=None if up else "timeout",
            errors=(0, 0, 0, 0, 3, 0, 0, 0),
        )

    return [
        polled(endpoint, True, items, 0.2),
        polled(group, True, items[:2], 0.1),
        polled(lone, False, [], 1.0),
        TargetState(Target("endpoint", 4)),
    ]


FULL = {
    "price_dollars_per_hour": 12.345678,
    "storage_price_dollars_per_hour": 0.02,
    "gpu_utilization_ratio": 0.73,
    "gpu_temperature_celsius": 71.5,
    "gpu_memory_total_bytes": 24576 * 2**20,
    "gpu_memory_used_bytes": 20.5e9,
    "cpu_utilization_ratio": 0.12,
    "memory_used_bytes": 1e9,
    "memory_limit_bytes": 15.7e9,
    "instance_reliability": 0.97,
}
INSTANCES = {
    "10": Instance("10", ODD, "8", "4242", 'Sweden, "SE"', ODD, FULL),
    # no price: info and status only
    "11": Instance("11", "RTX 4090", "1", "", "", "running", {"gpu_temperature_celsius": 40}),
    "12": Instance("12", "A100", "1", "7", "US", "", {"price_dollars_per_hour": 1.5}),
    "999": Instance("999", "H100", "1", "1", "US", "running", FULL),  # not a worker
}


@pytest.mark.parametrize("openmetrics", [False, True])
def test_fast_render_is_byte_identical_to_prometheus_client(openmetrics: bool) -> None:
    snap = snapshot()
    assert render(snap, openmetrics) == reference(snap, openmetrics)
    text = render(snap, openmetrics).decode()
    assert text.count("vastai_worker_instance_info{") == 3 and 'worker_id="999"' not in text
    assert text.count("vastai_worker_price_dollars_per_hour{") == 2
    assert text.count("vastai_worker_gpu_utilization_ratio{") == 1
    assert text.count("vastai_worker_instance_status{") == 2
    # worker 10 (status ODD, unknown) on an instance whose actual_status is ODD: storage only;
    # worker 12 ("running") bills compute; worker 11 has no price, so no bill.
    assert text.count("vastai_worker_billed_dollars_per_hour{") == 2
    empty = build_snapshot((), 300, NOW)
    assert render(empty, openmetrics) == reference(empty, openmetrics)


# A made-up read's families, as a read declares them in its own module: labels of its own that
# sort before the worker labels (az), between the endpoint's and the worker's (price), after them
# (zone), and inside the endpoint's pair (endpoint_kind) and the worker's (worker_host).
PLAIN = WorkerFamily("vastai_worker_made_up_value", "A value per worker; made up.")
AROUND = WorkerFamily("vastai_worker_made_up_info", 'Around; "made" up.\n', ("zone", "az", "price"))
INSIDE = WorkerFamily("vastai_worker_made_up_inside", "Inside.", ("worker_host", "endpoint_kind"))
BEFORE = WorkerFamily("vastai_worker_made_up_before", "Before.", ("a", "b"))
NOTHING_YET = WorkerFamily("vastai_worker_made_up_nothing", "Nothing read yet.", ("zone",))
RUNNING = WorkerFamily("vastai_worker_made_up_running", "1 while the worker's status is running.")
ZERO = -0.0


@dataclass(frozen=True)
class MadeUpView(View):
    """Odd values by worker id: NaN, infinities, zeros of both signs, an int, several samples
    a worker, a worker the snapshot does not hold (999), and one value from the statuses."""

    seen: list = field(default_factory=list)  # the statuses each call was given

    def worker_families(self, statuses: Mapping[str, str | None]) -> Iterator[WorkerSeries]:
        self.seen.append(dict(statuses))
        nan, inf = float("nan"), float("inf")
        yield WorkerSeries(PLAIN, {"10": nan, "11": 3, "12": ZERO, "100": 0.0, "101": -inf})
        yield WorkerSeries(
            AROUND,
            {
                "10": ((("z", ODD, "old"), 1.5), (("z", ODD, "new"), 2.25)),
                "11": ((("", "a", "old"), ZERO), (("", "a", "new"), 0.0)),
                "999": ((("z", "a", "old"), 1.0),),
                "102": (),  # no samples: no series
            },
        )
        yield WorkerSeries(INSIDE, {"10": (((ODD, "k"), inf),), "12": ((("h", "k"), 1e22),)})
        yield WorkerSeries(BEFORE, {worker_id: (((ODD, "b"), 1.0),) for worker_id in statuses})
        yield WorkerSeries(
            RUNNING,
            {worker_id: float(status == "running") for worker_id, status in statuses.items()},
        )
        yield WorkerSeries(NOTHING_YET, {})


def label_names(text: str, name: str) -> list[list[str]]:
    """The label names of each sample of a family, in the order they are written."""
    samples = re.findall(rf"^{name}{{(.*)}} \S+$", text, re.MULTILINE)
    return [re.findall(r'(?:^|,)(\w+)="', labels) for labels in samples]


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_reads_own_per_worker_families_render_as_prometheus_client_does(openmetrics) -> None:
    """A read declares its families and gives values by worker id; both renderers join them to
    the rows and sort its labels among the worker labels, byte for byte alike, wherever they
    sort; its families follow the instance list's, in views' order."""
    made_up = MadeUpView()
    views = [InstancesView(INSTANCES, (3, 2.5)), made_up]
    snap = build_snapshot(states(), 300, NOW, views=views)
    fast = render(snap, openmetrics)
    assert fast == reference(snap, openmetrics)
    text = fast.decode()
    helps = re.findall(r"^# HELP (\w+)", text, re.MULTILINE)
    start = helps.index("vastai_worker_instance_info") + 1
    assert helps[start : start + 7] == [
        PLAIN.name,
        AROUND.name,
        INSIDE.name,
        BEFORE.name,
        RUNNING.name,
        NOTHING_YET.name,
        "vastai_target_up",
    ]
    workers = {row[0]: row[1] for row in snap.rows}
    assert made_up.seen[-1] == workers  # each worker's status, by worker id
    assert f"{NOTHING_YET.name}{{" not in text and f"# TYPE {NOTHING_YET.name} gauge" in text
    around = sorted(["az", "price", "zone", *WORKER_LABELS])
    assert label_names(text, AROUND.name) == [around] * 4  # 2 + 2 samples; 999 and 102: none
    inside = sorted(["worker_host", "endpoint_kind", *WORKER_LABELS])
    assert label_names(text, INSIDE.name) == [inside] * 2
    assert label_names(text, BEFORE.name) == [["a", "b", *WORKER_LABELS]] * len(workers)
    assert 'worker_id="11"} 3.0\n' in text and 'worker_id="12"} -0.0\n' in text
    assert 'worker_id="10"} NaN\n' in text and 'worker_id="100"} 0.0\n' in text
    assert text.count(f"{PLAIN.name}{{") == 5 and 'worker_id="999"' not in text


def test_label_order_places_a_familys_labels_among_the_worker_labels() -> None:
    order = LabelOrder.of(("zone", "az", "price", "actual_status"))
    assert order.before == (("actual_status", 3), ("az", 1))
    assert order.between == (("price", 2),)
    assert order.after == (("zone", 0),)
    assert not order.split
    assert LabelOrder.of(("endpoint_kind",)).split and LabelOrder.of(("worker_host",)).split
    assert LabelOrder.of(()) == LabelOrder((), (), (), False)


@pytest.mark.parametrize(
    ("name", "labels", "problem"),
    [
        ("vastai worker", (), "not a metric name"),
        ("vastai_worker_x", ("worker_id",), "is a worker label"),
        ("vastai_worker_x", ("endpoint_name",), "is a worker label"),
        ("vastai_worker_x", ("zone", "zone"), "repeated"),
        ("vastai_worker_x", ("__zone",), "not a label name"),
        ("vastai_worker_x", ("gpu-name",), "not a label name"),
    ],
)
def test_a_worker_family_is_checked_when_declared(name, labels, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        WorkerFamily(name, "help", labels)


def test_go_float_is_prometheus_clients_float_format() -> None:
    rng = random.Random(17)
    edges = [0.0, -0.0, 5e-324, -1e-300, 1e-7, 100.0, 999999.9, 1e6, 1234567.0, 1724275993.997]
    edges += [1e16, 1e22, 1.5e22, 12345678901234567890.0, -1234567.5, 1.7976931348623157e308]
    edges += [float("inf"), float("-inf"), 30.0 * 2**30, 2.0**53 + 2]
    randoms = [rng.uniform(-1, 1) * 10 ** rng.uniform(-12, 22) for _ in range(5000)]
    for value in edges + randoms:
        assert go_float(value) == floatToGoString(value), value


def test_openmetrics_output_parses_and_ends_with_eof() -> None:
    body = render(snapshot(), openmetrics=True).decode()
    assert body.endswith("# EOF\n")
    names = {family.name for family in parse_om(body)}
    assert "vastai_target_poll_errors" in names and "vastai_worker_status" in names


async def test_forms_made_on_demand_are_byte_identical_to_eager_ones() -> None:
    """Only gzip-compressed OpenMetrics is rendered eagerly; the text format and both
    uncompressed forms, produced when asked for, are what the eager renders made (and what
    prometheus-client renders) byte for byte, and are kept for the next scrape."""
    snap = snapshot()
    text, openmetrics = reference(snap, False), reference(snap, True)
    exposition = build_exposition(snap)
    assert exposition._bodies.keys() == {True} and not exposition._raw  # nothing else yet
    assert gzip.decompress(exposition.openmetrics_gzip) == openmetrics
    prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    for accept, encoding, expected, content_type in [
        (prometheus, "gzip", openmetrics, "application/openmetrics-text; version=1.0.0"),
        (prometheus, "", openmetrics, "application/openmetrics-text; version=1.0.0"),
        ("*/*", "gzip, deflate", text, "text/plain; version=0.0.4; charset=utf-8"),
        ("*/*", "", text, "text/plain; version=0.0.4; charset=utf-8"),
    ]:
        chunks, sent_type, sent_encoding = await exposition.select(accept, encoding)
        body = b"".join(chunks)
        assert sent_type.startswith(content_type)
        assert sent_encoding == ("gzip" if encoding else None)
        assert (gzip.decompress(body) if encoding else body) == expected
        again, _, _ = await exposition.select(accept, encoding)
        assert again[0] is chunks[0]  # kept until the next render replaces the exposition
    assert exposition.text == text and exposition.openmetrics == openmetrics
    assert gzip.decompress(exposition.text_gzip) == text
    # Produced in the other order, from the other encoding of the same form.
    other = build_exposition(snap)
    assert gzip.decompress(other.text_gzip) == text and other.text == text


async def test_a_scrape_during_a_swap_sees_one_snapshot() -> None:
    """A scrape takes one Exposition and every form it gets is of that exposition's snapshot,
    whether its on-demand render runs before or after the next render swaps a new one in."""
    current = states(load=1.0)
    cache = MetricsCache(lambda: current, stale_after=300, refresh_every=60)
    await cache.refresh()
    for scrape_first in (True, False):
        before = cache.exposition
        old = reference(before.snapshot, openmetrics=False)
        current = states(load=before.snapshot.workers[2].worker.value("cur_load") + 1)
        gate = threading.Event()
        RENDERER.submit(gate.wait, 10)  # the render thread is busy: both wait in its queue
        if scrape_first:
            scrape = asyncio.ensure_future(before.select("text/plain", ""))
            await asyncio.sleep(0)
            swap = asyncio.ensure_future(cache.refresh())
        else:
            swap = asyncio.ensure_future(cache.refresh())
            await asyncio.sleep(0)
            scrape = asyncio.ensure_future(before.select("text/plain", ""))
        await asyncio.sleep(0)  # the later one's first step: both now wait on the render thread
        assert not swap.done()
        assert cache.exposition is before  # nothing swapped while the render thread was held
        gate.set()
        (chunks, _, _), _ = await asyncio.gather(scrape, swap)
        body = b"".join(chunks)
        assert cache.exposition is not before
        new = reference(cache.snapshot, openmetrics=False)
        assert old != new
        assert body == old  # the old snapshot, whole
        assert await cache.exposition.select("text/plain", "") == ((new, b""), TEXT_TYPE, None)
        assert gzip.decompress(cache.exposition.openmetrics_gzip) == reference(
            cache.snapshot, openmetrics=True
        )


async def test_a_tail_follows_the_cached_families_in_one_gzip_member() -> None:
    """What a scrape appends (the process and Python families) comes after the cached bytes,
    before OpenMetrics' # EOF, and a gzip answer stays one member."""
    exposition = build_exposition(snapshot())
    text, openmetrics = render(snapshot(), False), render(snapshot(), True)
    tail = b"# HELP t Tail.\n# TYPE t gauge\nt 1.0\n"
    for accept, expected in (("*/*", text + tail), ("application/openmetrics-text", None)):
        for encoding in ("gzip", ""):
            chunks, _, _ = await exposition.select(
                accept, encoding, lambda om: tail + (b"# EOF\n" * om)
            )
            joined = b"".join(chunks)
            body = gzip.decompress(joined) if encoding else joined
            assert body == (expected or openmetrics[:-6] + tail + b"# EOF\n")
            if encoding:  # one gzip member, which every client reads whole
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                assert decompressor.decompress(joined) == body and decompressor.eof
                assert decompressor.unused_data == b""


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 200_000])
def test_a_stored_tail_ends_the_one_gzip_member(size: int) -> None:
    """The tail is appended as stored deflate blocks (65,535 bytes at most each) with the
    trailer's CRC and length over the whole member: every client reads it as one member."""
    pieces = [b"# HELP a A.\n" * 500, random.Random(size).randbytes(5000), b""]
    tail = random.Random(size + 1).randbytes(size)
    joined = b"".join(Body(pieces).gzip_chunks(tail))
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decompressor.decompress(joined) == b"".join(pieces) + tail
    assert decompressor.eof and decompressor.unused_data == b""
    assert gzip.decompress(joined) == b"".join(pieces) + tail


def fake_proc(root, limit: int) -> None:
    """A /proc with a boot time and one process (pid 4242) of three descriptors."""
    (root / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    process = root / "4242"
    (process / "fd").mkdir(parents=True)
    for fd in range(3):
        (process / "fd" / str(fd)).write_text("")
    fields = ["S", *(str(n) for n in range(1, 60))]
    fields[11], fields[12], fields[19], fields[20], fields[21] = "1234", "567", "890", "73", "21"
    (process / "stat").write_text(f"4242 (python (odd) name) {' '.join(fields)}\n")
    (process / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max cpu time              unlimited            unlimited            seconds   \n"
        f"Max open files            {limit}                 1048576              files     \n"
    )


@pytest.mark.parametrize("openmetrics", [False, True])
def test_process_and_python_families_are_written_into_prometheus_client_text(
    tmp_path, monkeypatch, openmetrics
) -> None:
    """The figures read per scrape, written into the text the collectors fixed, are what
    prometheus-client writes from its collectors reading the same /proc and GC."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # what /proc/self/limits shows
    fake_proc(tmp_path, limit)
    runtime = RuntimeFamilies(proc=str(tmp_path), pid="4242")
    (tmp_path / "4242" / "fd" / "3").write_text("")  # a figure that changes between scrapes
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(runtime.collect()))

    def collectors_not_used() -> None:
        raise AssertionError("a scrape went through the collectors")

    monkeypatch.setattr(runtime, "collect", collectors_not_used)
    generate = generate_openmetrics if openmetrics else generate_text
    enabled = gc.isenabled()
    gc.disable()  # the GC figures must not move between the two
    try:
        fast, expected = runtime.render(openmetrics), generate(registry)
    finally:
        if enabled:
            gc.enable()
    assert fast == expected
    assert b"process_open_fds 4.0\n" in fast and b"process_max_fds %d.0\n" % limit in fast


def test_the_descriptor_limit_is_the_one_proc_shows() -> None:
    """process_max_fds comes from getrlimit: the soft limit /proc/self/limits shows."""
    with open("/proc/self/limits", "rb") as limits:
        line = next(line for line in limits if line.startswith(b"Max open file"))
    text = RuntimeFamilies().render(openmetrics=False)
    assert b"process_max_fds %s\n" % floatToGoString(float(line.split()[3])).encode() in text


def test_process_families_without_proc_are_collected_as_prometheus_client_does(
    tmp_path,
) -> None:
    """Without a readable /proc, each scrape goes through the collectors (which then export
    only the python_* families)."""
    runtime = RuntimeFamilies(proc=str(tmp_path / "none"), pid="4242")
    text = runtime.render(openmetrics=False)
    assert b"python_info" in text and b"process_" not in text
    assert text == render_simple(runtime.collect(), openmetrics=False)


class Fixed:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> list:
        return self.families


@pytest.mark.parametrize("openmetrics", [False, True])
def test_process_and_python_families_render_as_prometheus_client_does(openmetrics) -> None:
    families = RuntimeFamilies().collect()
    names = {family.name for family in families}
    assert {"process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds"} <= names
    assert {"python_info", "python_gc_objects_collected"} <= names
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(families))
    generate = generate_openmetrics if openmetrics else generate_text
    expected = generate(registry)
    assert render_simple(families, openmetrics) + (b"# EOF\n" if openmetrics else b"") == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/openmetrics-text;version=1.0.0;q=0.6,text/plain;q=0.5", True),
        ("application/openmetrics-text; version=0.0.1", True),
        ("text/plain;version=0.0.4", False),
        ("", False),
        ("application/openmetrics-text;q=0", False),
    ],
)
def test_wants_openmetrics(accept: str, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected
