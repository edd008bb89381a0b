"""The fast renderer against prometheus-client's own, and content negotiation."""

from __future__ import annotations

import gzip
import zlib

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from exporter.config import Target
from exporter.exposition import (
    RuntimeFamilies,
    build_exposition,
    render,
    render_simple,
    wants_openmetrics,
)
from exporter.instances import InstancesView
from exporter.metrics import Snapshot, SnapshotCollector, build_snapshot
from exporter.parsing import Instance, parse_workers_payload
from exporter.scheduler import TargetState

from .fakevast import worker

NOW = 1_800_000_000.0
ODD = 'quote " back \\ slash \n newline ünïcode'


def snapshot() -> Snapshot:
    endpoint = Target("endpoint", 1, ODD, 1, ODD)
    group = Target("worker_group", 2, "g", 1, ODD)
    lone = Target("worker_group", 3)
    items = [
        worker(10, status=ODD, cur_load=float("nan"), perf=float("inf"), dlperf=-1e-300),
        worker(11, status=None, reliability="0.5", disk_usage=1e22, loaded_at=1724275993.997),
        worker(12, cur_perf=123456789012, reqs_working=0),
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

    states = [
        polled(endpoint, True, items, 0.2),
        polled(group, True, items[:2], 0.1),
        polled(lone, False, [], 1.0),
        TargetState(Target("endpoint", 4)),
    ]
    full = {
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
    instances = {
        "10": Instance("10", ODD, "8", "4242", 'Sweden, "SE"', ODD, full),
        # no price: info and status only
        "11": Instance("11", "RTX 4090", "1", "", "", "running", {"gpu_temperature_celsius": 40}),
        "12": Instance("12", "A100", "1", "7", "US", "", {"price_dollars_per_hour": 1.5}),
        "999": Instance("999", "H100", "1", "1", "US", "running", full),  # not a worker
    }
    return build_snapshot(states, 300, NOW, views=[InstancesView(instances, (3, 2.5))])


def reference(snap: Snapshot, openmetrics: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return (generate_openmetrics if openmetrics else generate_text)(registry)


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


def test_openmetrics_output_parses_and_ends_with_eof() -> None:
    body = render(snapshot(), openmetrics=True).decode()
    assert body.endswith("# EOF\n")
    names = {family.name for family in parse_om(body)}
    assert "vastai_target_poll_errors" in names and "vastai_worker_status" in names


def test_exposition_holds_gzip_of_each_format_open_for_a_tail() -> None:
    exposition = build_exposition(snapshot())
    text, openmetrics = render(snapshot(), False), render(snapshot(), True)
    assert exposition.text.raw == text and exposition.openmetrics.raw + b"# EOF\n" == openmetrics
    chunks, content_type, encoding = exposition.select(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", "gzip"
    )
    assert gzip.decompress(b"".join(chunks)) == openmetrics and encoding == "gzip"
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    chunks, content_type, encoding = exposition.select("*/*", "")
    assert b"".join(chunks) == text and encoding is None
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    tail = b"# HELP t Tail.\n# TYPE t gauge\nt 1.0\n"
    for accept, expected in (("*/*", text + tail), ("application/openmetrics-text", None)):
        chunks, _, _ = exposition.select(accept, "gzip", lambda om: tail + (b"# EOF\n" * om))
        body = gzip.decompress(b"".join(chunks))
        assert body == (expected or openmetrics[:-6] + tail + b"# EOF\n")
        # one gzip member, which every client reads whole (not every client reads a second one)
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert decompressor.decompress(b"".join(chunks)) == body and decompressor.eof
        assert decompressor.unused_data == b""


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
