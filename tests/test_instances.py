"""Cost and hardware: the instance list joined to the exported workers."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from exporter.config import ConfigError, InstancesSettings, parse_config

from .fakevast import INSTANCES_PATH, FakeVast, failure, instance, worker, workers
from .harness import API_KEY, fast_config, series


def labels_of(samples: dict, metric: str) -> dict[str, dict[str, str]]:
    return {dict(k)["worker_id"]: dict(k) for k in series(samples, metric)}


def prices(samples: dict) -> dict[str, float]:
    found = series(samples, "vastai_worker_price_dollars_per_hour")
    return {dict(labels)["worker_id"]: value for labels, value in found.items()}


def instances_config(fake: FakeVast, **overrides: object) -> dict:
    return fast_config(
        fake.url,
        vast={"console_url": fake.url},
        endpoints=[{"id": 10, "name": "chat"}],
        instances={"enabled": True, "interval": "1s"},
        **overrides,
    )


async def test_prices_and_hardware_join_the_right_workers(fake_vast, start_exporter) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1), worker(2), worker(3)))
    fake_vast.set_instances(
        [
            instance(1, "RTX 4090", 0.42, num_gpus=2, geolocation="Norway, NO"),
            instance(2, "H100 SXM", None, machine_id=None, num_gpus="8"),  # no price
            instance(77, "A100", 1.5),  # an instance that is no worker of a polled target
            {"id": None, "gpu_name": "broken"},
        ]
    )
    exporter = await start_exporter(instances_config(fake_vast))
    samples = await exporter.wait_for_metrics(lambda s: len(prices(s)) == 1)
    assert prices(samples) == {"1": 0.42}
    info = labels_of(samples, "vastai_worker_instance_info")
    assert set(info) == {"1", "2"}  # worker 3 has no instance; instance 77 is no worker
    assert info["1"] == {
        "endpoint_id": "10",
        "endpoint_name": "chat",
        "worker_group_id": "",
        "worker_id": "1",
        "gpu_name": "RTX 4090",
        "num_gpus": "2",
        "machine_id": "9001",
        "geolocation": "Norway, NO",
    }
    assert (info["2"]["machine_id"], info["2"]["num_gpus"]) == ("", "8")
    assert len(series(samples, "vastai_worker_status")) == 3  # worker 3 still exported
    assert series(samples, "vastai_target_up", kind="instances", id="account")
    text = await exporter.scrape()
    assert 'worker_id="77"' not in text and "secret-jupyter-token" not in text
    assert await exporter.stop() == 0
    assert API_KEY not in exporter.log and API_KEY not in text


async def test_instance_list_read_no_more_often_than_its_interval(
    fake_vast, start_exporter
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    exporter = await start_exporter(instances_config(fake_vast))
    await asyncio.sleep(3.5)
    assert await exporter.stop() == 0
    reads = [r for r in fake_vast.requests if r.path == INSTANCES_PATH]
    assert 3 <= len(reads) <= 4  # at 0, 1, 2 and 3 s, while the workers were polled ~12 times
    assert {r.query for r in reads} == {"owner=me"}
    times = [r.at for r in reads]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.99
    assert len([r for r in fake_vast.requests if r.path != INSTANCES_PATH]) >= 8


async def test_failing_instance_list_keeps_prices_until_stale(fake_vast, start_exporter) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.set_instances([instance(1, "RTX 4090", 0.42)])
    config = instances_config(fake_vast, polling={"stale_after": "2500ms"})
    exporter = await start_exporter(config)
    await exporter.wait_for_metrics(lambda s: prices(s) == {"1": 0.42})
    fake_vast.listings[INSTANCES_PATH] = failure(500, "Internal Server Error")
    down = await exporter.wait_for_metrics(
        lambda s: (
            series(s, "vastai_target_up", kind="instances")
            == {frozenset({("kind", "instances"), ("id", "account"), ("name", "")}): 0.0}
        ),
        timeout=5,
    )
    assert prices(down) == {"1": 0.42}  # kept for stale_after
    gone = await exporter.wait_for_metrics(lambda s: prices(s) == {}, timeout=6)
    assert series(gone, "vastai_worker_instance_info") == {}
    assert len(series(gone, "vastai_worker_status")) == 1  # the worker itself stays
    [errors] = series(
        gone, "vastai_target_poll_errors_total", kind="instances", reason="server_error"
    ).values()
    assert errors >= 1
    fake_vast.set_instances([instance(1, "RTX 4090", 0.5)])
    await exporter.wait_for_metrics(lambda s: prices(s) == {"1": 0.5}, timeout=5)
    assert "Traceback" not in exporter.log


def test_instances_config() -> None:
    config = parse_config({"endpoints": [{"id": 1}], "instances": {"enabled": True}})
    assert config.instances == InstancesSettings(True, 60.0)
    for bad in ({"interval": "100ms"}, {"enabled": 1}, {"every": "1m"}):
        with pytest.raises(ConfigError) as caught:
            parse_config({"endpoints": [{"id": 1}], "instances": bad})
        assert str(caught.value.key).startswith("instances.")
