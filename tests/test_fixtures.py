"""Replay of Vast's own published examples (tests/fixtures/vast/) through the real client and
parser over HTTP, checking what is exported from each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .fakevast import (
    ENDPTJOBS_PATH,
    WORKERGROUP_PATH,
    WORKERGROUPS_PATH,
    FakeVast,
    failure,
)
from .harness import API_KEY, fast_config, series, value

# The exporter runs in this event loop: every wait takes virtual time (tests/virtualtime.py).
pytestmark = pytest.mark.virtual_time

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vast"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_fixture_is_named_in_the_readme_and_replayed_here() -> None:
    readme = (FIXTURES / "README.md").read_text()
    files = sorted(path.name for path in FIXTURES.glob("*.json"))
    assert files and all(f"`{name}`" in readme for name in files)
    here = Path(__file__).read_text()
    assert [name for name in files if f'"{name}"' not in here] == []


@pytest.fixture
async def group_path_fake() -> FakeVast:
    """A fake whose worker-group call lives only at the newer /get_workergroup_workers/."""
    fake = await FakeVast(API_KEY, group_paths=(WORKERGROUP_PATH,)).start()
    yield fake
    await fake.close()


async def test_openapi_worker_lists_and_their_error_strings(group_path_fake, run_exporter):
    fake = group_path_fake
    fake.set("endpoint", 1, failure(200, body("get_endpoint_workers.200.json")))
    fake.set("endpoint", 2, failure(200, body("get_endpoint_workers.200-error.json")))
    fake.set("worker_group", 3, failure(200, body("get_workergroup_workers.200.json")))
    fake.set("worker_group", 4, failure(200, body("get_workergroup_workers.200-error.json")))
    config = fast_config(
        fake.url,
        endpoints=[{"id": 1}, {"id": 2}],
        worker_groups=[{"id": 3, "endpoint_id": 1}, {"id": 4}],
    )
    exporter = await run_exporter(config)
    samples = await exporter.wait_for_metrics(lambda s: len(series(s, "vastai_target_up")) == 4)
    # The documented shape: id, status, url, created_at (ISO-8601) for worker 67890.
    worker = {"worker_id": "67890", "endpoint_id": "1", "worker_group_id": "3"}
    assert value(samples, "vastai_worker_status", status="running", **worker) == 1
    assert value(samples, "vastai_worker_created_timestamp_seconds", **worker) == 1696161600.0
    assert value(samples, "vastai_target_up", kind="endpoint", id="1") == 1
    assert value(samples, "vastai_target_up", kind="worker_group", id="3") == 1
    for kind, target_id in (("endpoint", "2"), ("worker_group", "4")):
        assert value(samples, "vastai_target_up", kind=kind, id=target_id) == 0
        assert value(samples, "vastai_target_poll_errors_total", id=target_id, reason="auth") >= 1
    messages = {s.target.id: s.last_error_message for s in exporter.exporter.scheduler.states()}
    assert messages[2] == json.loads(body("get_endpoint_workers.200-error.json"))
    assert messages[4] == json.loads(body("get_workergroup_workers.200-error.json"))
    assert "192.168.1.10" not in await exporter.scrape()  # the worker's url is never exported


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "seed-worker.json",
            {
                "vastai_worker_cur_load": 150,
                "vastai_worker_disk_usage_bytes": 30 * 2**30,
                "vastai_worker_loaded_timestamp_seconds": 1724275993.997,
                "vastai_worker_perf": 100.5784639818423245,
                "vastai_worker_reqs_working": 2,
            },
        ),
        (
            "sdk-full-worker.json",
            {
                "vastai_worker_new_load": 0.6,
                "vastai_worker_started_timestamp_seconds": 1699999000.0,
                "vastai_worker_disk_usage_bytes": 0.4 * 2**30,
                "vastai_worker_cur_load_rolling_avg": 0.55,
            },
        ),
        ("sdk-minimal-worker.json", {}),
    ],
)
async def test_worker_objects_of_the_docs_and_the_sdk(
    fake_vast: FakeVast, run_exporter, name: str, expected: dict[str, float]
) -> None:
    fake_vast.set("endpoint", 10, failure(200, body(name)))
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_workers", id="10") == 1
    )
    [raw] = json.loads(body(name))
    labels = {"worker_id": str(raw["id"])}
    for metric, number in expected.items():
        assert value(samples, metric, **labels) == pytest.approx(number), metric
    statuses = series(samples, "vastai_worker_status", **labels)
    assert [dict(s)["status"] for s in statuses] == (
        [raw["status"].lower()] if "status" in raw else []
    )


async def test_the_sdks_error_msg_answer_is_not_ready(fake_vast: FakeVast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, failure(200, body("sdk-error-msg.json")))
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_not_ready", id="10") == 1
    )
    assert value(samples, "vastai_target_up", id="10") == 1
    assert value(samples, "vastai_target_workers", id="10") == 0


async def test_openapi_listings(fake_vast: FakeVast, run_exporter) -> None:
    fake_vast.listings[ENDPTJOBS_PATH] = failure(200, body("endptjobs.200.json"))
    fake_vast.listings[WORKERGROUPS_PATH] = failure(200, body("workergroups.200.json"))
    fake_vast.set("endpoint", 123, failure(200, b"[]"))
    fake_vast.set("worker_group", 123, failure(200, b"[]"))
    config = fast_config(fake_vast.url, discovery={"enabled": True, "interval": "1m"})
    config["vast"]["console_url"] = fake_vast.url
    exporter = await run_exporter(config)
    samples = await exporter.wait_for_metrics(
        lambda s: len(series(s, "vastai_target_up")) == 3 and series(s, "vastai_endpoint_info")
    )
    endpoint = {"endpoint_id": "123", "endpoint_name": "vLLM-Qwen3-8B"}
    assert value(samples, "vastai_endpoint_info", endpoint_state="active", **endpoint) == 1
    for metric, number in {
        "min_load": 0.0,
        "target_util": 0.9,
        "cold_mult": 2.5,
        "cold_workers": 5,
        "max_workers": 20,
    }.items():
        assert value(samples, f"vastai_endpoint_{metric}", **endpoint) == number
    group = {"worker_group_id": "123", "endpoint_id": "789", "endpoint_name": "my_endpoint"}
    assert (
        value(samples, "vastai_worker_group_info", template_id="456", template_hash="abc123def456")
        == 1
    )
    assert value(samples, "vastai_worker_group_test_workers", **group) == 3
    assert value(samples, "vastai_worker_group_gpu_ram_bytes", **group) == 24 * 1000 * 2**20
    for metric, number in {"min_load": 1.0, "target_util": 0.9, "cold_mult": 3.0}.items():
        assert value(samples, f"vastai_worker_group_{metric}", **group) == number
    text = await exporter.scrape() + (await exporter.get("/"))[1]
    assert "your_api_key_here" not in text  # the listings' per-endpoint keys are secrets


@pytest.mark.parametrize(
    ("name", "status", "up", "reason"),
    [("endptjobs.400.json", 400, 1, None), ("endptjobs.429.json", 429, 0, "rate_limited")],
)
async def test_openapi_listing_errors(
    fake_vast: FakeVast, run_exporter, name: str, status: int, up: int, reason: str | None
) -> None:
    fake_vast.listings[ENDPTJOBS_PATH] = failure(status, body(name))
    config = fast_config(fake_vast.url, discovery={"enabled": True, "interval": "1m"})
    config["vast"]["console_url"] = fake_vast.url
    exporter = await run_exporter(config)
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_target_up", kind="listing") != {}
    )
    assert value(samples, "vastai_target_up", kind="listing") == up
    if reason is not None:
        assert value(samples, "vastai_target_poll_errors_total", kind="listing", reason=reason) == 1
