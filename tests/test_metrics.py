"""Snapshot merging and rendering, without the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import Target
from exporter.exposition import RuntimeFamilies
from exporter.exposition import render as render_exposition
from exporter.fields import (
    DEPLOYMENT_FIELDS,
    ENDPOINT_FIELDS,
    GROUP_FIELDS,
    INSTANCE_FIELDS,
    OFFER_FIELDS,
    PRICE_INCREASE_FIELDS,
    WORKER_FIELDS,
)
from exporter.metrics import build_snapshot
from exporter.parsing import REASONS, parse_instance_page, parse_workers_payload
from exporter.reads.billing import BillingView
from exporter.reads.contracts import ContractsView, parse_pending
from exporter.reads.deployments import DeploymentRow, DeploymentsView, parse_deployments
from exporter.reads.instances import InstancesView
from exporter.reads.listing import ListingView
from exporter.reads.supply import Offers, Round, SupplyView
from exporter.scheduler import TargetState

from .fakevast import deployment, instance, price_increase, worker
from .harness import parse_metrics, series
from .reference import reference

ENDPOINT = Target("endpoint", 10, "chat", 10, "chat")
GROUP = Target("worker_group", 20, "", 10, "chat")
LONE_GROUP = Target("worker_group", 30)
NOW = 1_800_000_000.0


def render(snapshot) -> bytes:
    return render_exposition(snapshot, openmetrics=False)


def state(target: Target, *items: dict, up: bool = True, at: float = NOW) -> TargetState:
    return TargetState(
        target,
        polled=True,
        up=up,
        workers=tuple(parse_workers_payload(list(items))),
        last_success=at,
        last_success_monotonic=at,
        last_duration=0.1,
    )


def worker_labels(samples: dict, name: str = "vastai_worker_cur_load") -> dict[str, dict]:
    return {dict(labels)["worker_id"]: dict(labels) for labels in series(samples, name)}


def test_a_worker_seen_by_endpoint_and_group_is_exported_once_with_both_ids() -> None:
    endpoint_only = Target("endpoint", 10, "chat", 10, "chat")
    group_without_endpoint = Target("worker_group", 20)
    snapshot = build_snapshot(
        [
            state(group_without_endpoint, worker(1, cur_load=5), at=NOW),
            state(endpoint_only, worker(1, cur_load=3), worker(2), at=NOW - 1),
        ],
        stale_after=300,
        now=NOW,
    )
    samples = parse_metrics(render(snapshot).decode())
    labels = worker_labels(samples)
    assert labels["1"] == {
        "endpoint_id": "10",
        "endpoint_name": "chat",
        "worker_group_id": "20",
        "worker_id": "1",
    }
    assert labels["2"]["worker_group_id"] == ""
    assert len(series(samples, "vastai_worker_cur_load", worker_id="1")) == 1
    # The freshest report (the group's) gives the figures.
    assert series(samples, "vastai_worker_cur_load", worker_id="1").popitem()[1] == 5.0


def test_group_configured_endpoint_labels_its_workers() -> None:
    snapshot = build_snapshot([state(GROUP, worker(7))], stale_after=300, now=NOW)
    labels = worker_labels(parse_metrics(render(snapshot).decode()))
    assert labels["7"]["endpoint_id"] == "10"
    assert labels["7"]["endpoint_name"] == "chat"


def test_unknown_ids_are_empty_labels() -> None:
    snapshot = build_snapshot([state(LONE_GROUP, worker(8))], stale_after=300, now=NOW)
    labels = worker_labels(parse_metrics(render(snapshot).decode()))
    assert labels["8"] == {
        "endpoint_id": "",
        "endpoint_name": "",
        "worker_group_id": "30",
        "worker_id": "8",
    }


def test_a_failing_target_keeps_workers_until_stale_after() -> None:
    down = state(ENDPOINT, worker(1), up=False, at=NOW - 100)
    fresh = build_snapshot([down], stale_after=300, now=NOW)
    assert [row.worker.id for row in fresh.workers] == ["1"]
    assert fresh.held[ENDPOINT.key] == 1
    expired = build_snapshot([down], stale_after=60, now=NOW)
    assert expired.workers == ()
    samples = parse_metrics(render(expired).decode())
    assert series(samples, "vastai_target_workers", kind="endpoint", id="10").popitem()[1] == 0
    assert series(samples, "vastai_target_up", id="10").popitem()[1] == 0


def test_status_series_and_missing_fields() -> None:
    raw = worker(3, status="MODEL_LOADING", cur_load=None)
    samples = parse_metrics(render(build_snapshot([state(GROUP, raw)], 300, NOW)).decode())
    [status_labels] = series(samples, "vastai_worker_status")
    assert dict(status_labels)["status"] == "model_loading"
    assert series(samples, "vastai_worker_cur_load") == {}
    assert series(samples, "vastai_worker_disk_usage_bytes").popitem()[1] == 30 * 2**30


def test_target_series_and_zeroed_error_counters() -> None:
    never_polled = TargetState(LONE_GROUP)
    samples = parse_metrics(
        render(build_snapshot([state(ENDPOINT, worker(1)), never_polled], 300, NOW)).decode()
    )
    assert series(samples, "vastai_target_up", kind="endpoint", id="10", name="chat") == {
        frozenset({("kind", "endpoint"), ("id", "10"), ("name", "chat")}): 1.0
    }
    assert series(samples, "vastai_target_up", id="30") == {}  # not polled yet: no verdict
    errors = series(samples, "vastai_target_poll_errors_total", id="30")
    assert sorted(dict(labels)["reason"] for labels in errors) == sorted(REASONS)
    assert set(errors.values()) == {0.0}
    [last_success] = series(samples, "vastai_target_last_success_timestamp_seconds").values()
    assert last_success == NOW
    assert series(samples, "vastai_exporter_build_info")


def every_view() -> list:
    """A view of each account read, with data for worker 1, so that every family is written
    (and compared with prometheus-client's rendering)."""
    billing = BillingView(12.5, -1.0, {"total": 3.0}, (("10", "chat", {"gpu": 2.0}),), ())
    [found] = parse_deployments(
        {"deployments": [deployment(7, 10, ttl=60, last_client_heartbeat=1)]}
    )
    row = DeploymentRow(("7", "square", "default", "10", "chat"), found, (), True, (1, 2))
    page = parse_instance_page({"instances": [instance(1, "RTX 4090", 0.4), instance(2, "", None)]})
    supply = SupplyView(
        ((("20", "10", "chat"), True, Offers(3, 4.0, 0.2, 0.25)),), Round((), 1, 0.5)
    )
    increases = parse_pending(
        {"pending_price_increases": [price_increase(1, 0.36, 0.45, 1.8e9, 1.9e9)]}
    )
    return [
        ListingView(),
        InstancesView(page, (4, 3.5)),
        billing,
        DeploymentsView((row,)),
        supply,
        ContractsView(increases),
    ]


@pytest.mark.parametrize("openmetrics", [False, True])
def test_every_reads_families_render_as_prometheus_client_does(openmetrics: bool) -> None:
    """The fast renderer against the reference over a view of every read: a read's families,
    per worker or not, are checked byte for byte once its view is in every_view()."""
    rows = [state(GROUP, worker(1, status="loading")), state(ENDPOINT, worker(1), worker(3))]
    snapshot = build_snapshot(rows, 300, NOW, views=every_view())
    text = render_exposition(snapshot, openmetrics)
    assert text == reference(snapshot, openmetrics)
    assert text.count(b"\nvastai_worker_instance_info{") == 1
    assert b'vastai_worker_billed_dollars_per_hour{endpoint_id="10"' in text


def test_help_texts_say_the_data_is_cached() -> None:
    snapshot = build_snapshot([state(ENDPOINT, worker(1))], 300, NOW, views=every_view())
    text = render(snapshot).decode()
    helps = [line for line in text.splitlines() if line.startswith("# HELP vastai_")]
    billed = [line for line in helps if "billing read" in line]
    searched = [line for line in helps if "cached from the last offer search" in line]
    contracted = [line for line in helps if "pending price increases" in line]
    polled = [
        line
        for line in helps
        if line.startswith(("# HELP vastai_worker_", "# HELP vastai_target"))
        and line not in billed + searched + contracted
    ]
    counted = [line for line in helps if "counted by this exporter" in line]  # lifecycle
    listed = [
        line
        for line in helps
        if line.startswith(("# HELP vastai_endpoint", "# HELP vastai_worker_group_"))
        and line not in billed + counted + searched
    ]
    priced = [line for line in polled if "instance list" in line]
    assert len(polled) == 42 and len(listed) == 16 and len(priced) == 13 and len(billed) == 5
    assert len(counted) == 5 and len(searched) == 5 and len(contracted) == 4
    deployments = [line for line in helps if line.startswith("# HELP vastai_deployment_")]
    assert len(deployments) == 13
    assert all("deployments read" in line for line in deployments if "_workers " not in line)
    assert all("cached from the last poll" in line for line in set(polled) - set(listed + priced))
    assert all("cached from the last account listing" in line for line in listed)
    assert all("cached from the last instance list" in line for line in priced)


def test_readme_documents_every_exported_metric() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = [state(GROUP, worker(1)), state(ENDPOINT, worker(1))]
    text = render(build_snapshot(rows, 300, NOW, views=every_view())).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert len(names) == 93
    runtime = RuntimeFamilies().render(openmetrics=False).decode()  # process_*, python_*
    names |= {line.split()[2] for line in runtime.splitlines() if line.startswith("# TYPE")}
    assert {"process_resident_memory_bytes", "process_open_fds", "python_info"} <= names
    assert {name for name in names if f"`{name}`" not in readme} == set()


def test_readme_unit_table_follows_the_field_declarations() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    tables = (
        ("vastai_worker_", WORKER_FIELDS),
        ("vastai_endpoint_", ENDPOINT_FIELDS),
        ("vastai_worker_group_", GROUP_FIELDS),
        ("vastai_worker_", INSTANCE_FIELDS),
        ("vastai_deployment_", DEPLOYMENT_FIELDS),
        ("vastai_worker_group_", OFFER_FIELDS),
        ("vastai_worker_", PRICE_INCREASE_FIELDS),
    )
    expected = [f"| `{f.api}` | `{p}{f.metric}` | {f.source} |" for p, t in tables for f in t]
    rows = [line for line in readme.splitlines() if line in expected]
    assert rows == expected
    for prefix, fields in tables:
        for field in fields:  # and each has its line in the metrics table
            name = f"`{prefix}{field.metric}`"
            assert any(
                line.startswith(f"| {name} |") and f"`{field.api}`" in line
                for line in readme.splitlines()
            ), name


def test_the_endpoint_target_beats_a_group_configured_endpoint() -> None:
    misconfigured_group = Target("worker_group", 20, "", 99, "wrong")
    for order in (1, -1):
        states = [state(misconfigured_group, worker(1)), state(ENDPOINT, worker(1))][::order]
        labels = worker_labels(parse_metrics(render(build_snapshot(states, 300, NOW)).decode()))
        assert (labels["1"]["endpoint_id"], labels["1"]["endpoint_name"]) == ("10", "chat")
        assert labels["1"]["worker_group_id"] == "20"
