"""Cost and GPU telemetry from the v1 instance list, joined to the exported workers (issue 11).

The fake API pages, filters and rate-limits /api/v1/instances/ as show_instances.yaml documents
(exporter/instance_list.py); the exporter runs in-process over HTTP on loopback.
"""

from __future__ import annotations

import itertools
import json
import logging

import pytest

from exporter.config import ConfigError, parse_config
from exporter.fields import INSTANCE_COLUMNS
from exporter.reads.instances import InstancesSettings
from exporter.sim import instance_list, ratelimit

from .fakevast import (
    INSTANCES_PATH,
    INSTANCES_V0_PATH,
    FakeVast,
    failure,
    instance,
    worker,
    workers,
)
from .harness import API_KEY, Samples, fast_config, series, value

# The exporter runs in this event loop: every wait takes virtual time (tests/virtualtime.py).
pytestmark = pytest.mark.virtual_time


def by_worker(samples: Samples, metric: str) -> dict[str, float]:
    return {dict(k)["worker_id"]: v for k, v in series(samples, metric).items()}


def instances_config(fake: FakeVast, **instances: object) -> dict:
    config = fast_config(
        fake.url,
        endpoints=[{"id": 10, "name": "chat"}],
        instances={"enabled": True, "interval": "1s", **instances},
    )
    config["vast"]["console_url"] = fake.url
    return config


def queries(fake: FakeVast) -> list[dict[str, str]]:
    from urllib.parse import parse_qsl

    return [dict(parse_qsl(r.query)) for r in fake.requests if r.path == INSTANCES_PATH]


async def test_every_series_with_its_unit_for_the_polled_workers_only(
    fake_vast: FakeVast, run_exporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_vast.set("endpoint", 10, workers(worker(1), worker(2), worker(3)))
    fake_vast.set_instances(
        [
            instance(1, "RTX 4090", 0.4221, num_gpus=2, geolocation="Norway, NO"),
            instance(2, "H100 SXM", None, machine_id=None, gpu_util=None, num_gpus=8),
            instance(77, "A100", 1.5),  # an instance that is no worker of a polled target
        ]
    )
    exporter = await run_exporter(instances_config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: len(by_worker(s, "vastai_worker_instance_info")) == 2
    )
    one = {"worker_id": "1"}
    assert value(samples, "vastai_worker_price_dollars_per_hour", **one) == 0.4221
    assert value(samples, "vastai_worker_storage_price_dollars_per_hour", **one) == 0.0021
    assert value(samples, "vastai_worker_billed_dollars_per_hour", **one) == 0.4221  # running
    assert value(samples, "vastai_worker_gpu_utilization_ratio", **one) == 0.725
    assert value(samples, "vastai_worker_gpu_temperature_celsius", **one) == 61.0
    assert value(samples, "vastai_worker_gpu_memory_total_bytes", **one) == 24576 * 2**20
    assert value(samples, "vastai_worker_gpu_memory_used_bytes", **one) == 20.5e9
    assert value(samples, "vastai_worker_cpu_utilization_ratio", **one) == 0.25
    assert value(samples, "vastai_worker_memory_used_bytes", **one) == 3.5e9
    assert value(samples, "vastai_worker_memory_limit_bytes", **one) == pytest.approx(15.71815424e9)
    assert value(samples, "vastai_worker_instance_reliability", **one) == 0.9686655
    assert value(samples, "vastai_worker_instance_status", actual_status="running", **one) == 1
    [info] = series(samples, "vastai_worker_instance_info", **one)
    assert dict(info) == {
        "endpoint_id": "10",
        "endpoint_name": "chat",
        "worker_group_id": "",
        "worker_id": "1",
        "gpu_name": "RTX 4090",
        "num_gpus": "2",
        "machine_id": "9001",
        "geolocation": "Norway, NO",
    }
    # Worker 2: no price and no utilization: those series are absent, the others are there.
    assert "2" not in by_worker(samples, "vastai_worker_price_dollars_per_hour")
    assert "2" not in by_worker(samples, "vastai_worker_billed_dollars_per_hour")
    assert "2" not in by_worker(samples, "vastai_worker_gpu_utilization_ratio")
    assert by_worker(samples, "vastai_worker_gpu_temperature_celsius")["2"] == 61.0
    assert len(by_worker(samples, "vastai_worker_status")) == 3  # worker 3 has no instance
    # Only the polled workers' ids and the exported columns were asked for; v0 never.
    first = queries(fake_vast)[0]
    assert json.loads(first["select_filters"]) == {"id": {"in": [1, 2, 3]}}
    assert json.loads(first["select_cols"]) == list(INSTANCE_COLUMNS)
    assert first["limit"] == "25"
    assert not [r for r in fake_vast.requests if r.path == INSTANCES_V0_PATH]
    text = await exporter.scrape() + (await exporter.get("/"))[1]
    for secret in ("secret-jupyter-token", "192.0.2.45", "ssh5.vast.ai", 'worker_id="77"'):
        assert secret not in text
    assert API_KEY not in text and API_KEY not in caplog.text
    assert all(API_KEY not in r.query for r in fake_vast.requests)


async def test_pages_are_followed_to_the_end_and_spaced(fake_vast: FakeVast, run_exporter):
    ids = list(range(1000, 1060))  # 60 workers: pages of 25, 25 and 10
    fake_vast.set("endpoint", 10, workers(*(worker(i) for i in ids)))
    fake_vast.set_instances([instance(i, "RTX 4090", 0.3) for i in ids])
    fake_vast.rate_limits[INSTANCES_PATH] = ratelimit.RateLimit()  # 1 s; faster calls: 429
    exporter = await run_exporter(instances_config(fake_vast, interval="1m"))
    samples = await exporter.wait_for_metrics(
        lambda s: len(by_worker(s, "vastai_worker_instance_info")) == 60, timeout=10
    )
    assert value(samples, "vastai_instances_read_pages") == 3
    assert value(samples, "vastai_instances_read_duration_seconds") == 2.0  # virtual time
    requests = [r for r in fake_vast.requests if r.path == INSTANCES_PATH]
    assert len(requests) == 3
    tokens = [q.get("after_token") for q in queries(fake_vast)]
    assert tokens[0] is None and tokens[1] and tokens[2] and tokens[1] != tokens[2]
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert gaps == [1.0, 1.0]  # exactly page_interval apart
    assert value(samples, "vastai_target_up", kind="instances") == 1
    assert set(series(samples, "vastai_target_poll_errors_total", kind="instances").values()) == {
        0.0
    }


async def test_a_failed_page_ends_the_read_and_keeps_the_rest_until_stale(
    fake_vast: FakeVast, run_exporter
) -> None:
    ids = list(range(2000, 2030))  # two pages: 25 and 5
    fake_vast.set("endpoint", 10, workers(*(worker(i) for i in ids)))
    fake_vast.set_instances([instance(i, "RTX 4090", 0.5) for i in ids])
    config = instances_config(fake_vast, interval="1s")
    config["polling"]["stale_after"] = "4s"
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(
        lambda s: len(by_worker(s, "vastai_worker_price_dollars_per_hour")) == 30, timeout=10
    )
    # Next read: page 1 has new prices, page 2 fails.
    done = len(queries(fake_vast))
    fake_vast.set_instances([instance(i, "RTX 4090", 0.7) for i in ids])
    fake_vast.instance_faults[done + 2] = failure(500, "Internal Server Error")
    samples = await exporter.wait_for_metrics(
        lambda s: (
            value(s, "vastai_target_poll_errors_total", kind="instances", reason="server_error")
            == 1
        ),
        timeout=10,
    )
    prices = by_worker(samples, "vastai_worker_price_dollars_per_hour")
    assert {prices[str(i)] for i in ids[:25]} == {0.7}  # read before the failure: updated
    assert {prices[str(i)] for i in ids[25:]} == {0.5}  # not read: last known value
    assert value(samples, "vastai_target_up", kind="instances") == 0
    # Every later page fails: the instances expire after stale_after; the workers stay.
    for ordinal in range(done + 3, done + 40):
        fake_vast.instance_faults[ordinal] = failure(502, "Bad Gateway")
    gone = await exporter.wait_for_metrics(
        lambda s: by_worker(s, "vastai_worker_price_dollars_per_hour") == {}, timeout=10
    )
    assert series(gone, "vastai_worker_instance_info") == {}
    assert len(by_worker(gone, "vastai_worker_status")) == 30


async def test_a_refused_cursor_restarts_from_the_first_page(fake_vast: FakeVast, run_exporter):
    ids = list(range(3000, 3030))
    fake_vast.set("endpoint", 10, workers(*(worker(i) for i in ids)))
    fake_vast.set_instances([instance(i, "RTX 4090", 0.5) for i in ids])
    fake_vast.instance_faults[2] = failure(400, {"error": "invalid_token", "msg": "Invalid token"})
    exporter = await run_exporter(instances_config(fake_vast, interval="1s"))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_up", kind="instances") == 1, timeout=10
    )
    assert (
        value(samples, "vastai_target_poll_errors_total", kind="instances", reason="api_error") == 1
    )
    tokens = [q.get("after_token") for q in queries(fake_vast)]
    assert tokens[:4] == [None, tokens[1], None, tokens[3]] and tokens[1] and tokens[3]


@pytest.mark.parametrize(
    ("status", "actual_status", "billed"),
    [
        ("ready", "running", 0.8021),
        ("running", "running", 0.8021),
        ("MODEL_LOADING", "running", 0.8021),
        ("loading", "loading", 0.8021),
        ("starting", "loading", 0.8021),
        ("creating", "created", 0.0021),
        ("stopped", "exited", 0.0021),
        ("stopping", "running", 0.0021),
        ("error", "running", 0.0),
        ("destroying", "exited", 0.0),
        ("rebooting", "running", 0.8021),  # billed by its previous state: the instance decides
        ("rebooting", "exited", 0.0021),
        ("unavail", "offline", 0.0021),
    ],
)
async def test_billed_dollars_follow_the_worker_state(
    fake_vast: FakeVast, run_exporter, status: str, actual_status: str, billed: float
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1, status=status)))
    fake_vast.set_instances([instance(1, "RTX 4090", 0.8021, actual_status=actual_status)])
    exporter = await run_exporter(instances_config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: by_worker(s, "vastai_worker_billed_dollars_per_hour") != {}
    )
    assert by_worker(samples, "vastai_worker_billed_dollars_per_hour") == {"1": billed}
    assert by_worker(samples, "vastai_worker_price_dollars_per_hour") == {"1": 0.8021}


async def test_no_workers_means_no_instance_request(fake_vast: FakeVast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, workers())
    exporter = await run_exporter(instances_config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_up", kind="instances") == 1
    )
    assert value(samples, "vastai_instances_read_pages") == 0
    assert queries(fake_vast) == []


def test_v1_answers_as_documented() -> None:
    records = [{"id": i, "dph_total": 0.1, "label": None} for i in range(1, 31)]
    status, first = instance_list.answer(records, {"limit": "25"})
    assert status == 200 and first["instances_found"] == 25 and first["total_instances"] == 30
    status, second = instance_list.answer(records, {"after_token": first["next_token"]})
    assert [r["id"] for r in second["instances"]] == list(range(26, 31))
    assert second["next_token"] is None
    assert instance_list.answer(records, {"after_token": "garbage"})[0] == 400
    computed = json.dumps({"dph_total": {"gt": 0}})
    assert instance_list.answer(records, {"select_filters": computed})[0] == 400
    _, chosen = instance_list.answer(
        records, {"select_cols": '["id","nope"]', "select_filters": '{"id":{"in":[3,4]}}'}
    )
    assert chosen["instances"] == [{"id": 3, "nope": None}, {"id": 4, "nope": None}]
    assert instance_list.answer(records, {"limit": "0"})[1]["instances_found"] == 5


def test_instances_config() -> None:
    config = parse_config({"endpoints": [{"id": 1}], "instances": {"enabled": True}})
    assert config.instances == InstancesSettings(True, 60.0, 1.0)
    parsed = parse_config(
        {"endpoints": [{"id": 1}], "instances": {"enabled": True, "page_interval": "2s"}}
    )
    assert parsed.instances.page_interval == 2.0
    for bad in ({"interval": "100ms"}, {"enabled": 1}, {"every": "1m"}, {"page_interval": "500ms"}):
        with pytest.raises(ConfigError) as caught:
            parse_config({"endpoints": [{"id": 1}], "instances": bad})
        assert str(caught.value.key).startswith("instances.")
