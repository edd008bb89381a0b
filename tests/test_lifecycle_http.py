"""Lifecycle series end to end: the fake API drives workers through their lifecycle, the
in-process exporter polls it over loopback, and /metrics is read back with exact values.

The interval is an hour, so after the first (automatic) poll every poll is made by the test,
and the tracker's clock is the test's. The loop's time is virtual (tests/virtualtime.py): the
waits for a render take none of the test's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from exporter.config import load_config
from exporter.lifecycle import BUCKETS
from exporter.service import Exporter
from exporter.targets import Shard

from .fakevast import FakeVast, failure, worker, workers
from .harness import API_KEY, Samples, fast_config, series, value

pytestmark = pytest.mark.virtual_time

NOW = [1000.0]


def at(t: float) -> None:
    NOW[0] = t


def w(worker_id: int, status: str, loaded: float, started: float) -> dict[str, Any]:
    return worker(worker_id, status=status, loaded_at=loaded, started_at=started)


def lifecycle(samples: Samples, endpoint_id: str) -> dict[str, Any]:
    """Every lifecycle figure of one endpoint, from a scrape."""
    name = "vastai_endpoint_cold_start_seconds"
    le = [*(f"{b}" for b in BUCKETS), "+Inf"]
    return {
        "buckets": [value(samples, f"{name}_bucket", endpoint_id=endpoint_id, le=b) for b in le],
        "sum": value(samples, f"{name}_sum", endpoint_id=endpoint_id),
        "added": value(samples, "vastai_endpoint_workers_added_total", endpoint_id=endpoint_id),
        "removed": value(samples, "vastai_endpoint_workers_removed_total", endpoint_id=endpoint_id),
        "errors": value(samples, "vastai_endpoint_worker_errors_total", endpoint_id=endpoint_id),
        "seconds": {
            dict(labels)["status"]: v
            for labels, v in series(
                samples, "vastai_endpoint_worker_state_seconds_total", endpoint_id=endpoint_id
            ).items()
        },
    }


async def test_worker_lifecycles_across_polls_and_failed_polls(
    fake_vast: FakeVast, run_exporter
) -> None:
    # Endpoint 10 is polled itself and through its group 20 (the same workers: counted once);
    # group 30 belongs to endpoint 11, which has no target of its own.
    config = fast_config(
        fake_vast.url,
        polling={"interval": "1h"},
        endpoints=[{"id": 10, "name": "chat"}],
        worker_groups=[{"id": 20, "endpoint_id": 10}, {"id": 30, "endpoint_id": 11}],
    )

    def both(*items: dict[str, Any]) -> None:
        fake_vast.set("endpoint", 10, workers(*items))
        fake_vast.set("worker_group", 20, workers(*items))

    at(1000.0)
    both(w(1, "running", 900.0, 800.0), w(2, "loading", 0, 990.0))  # 1 loaded before we looked
    fake_vast.set("worker_group", 30, workers(w(7, "model_loading", 0, 995.0)))
    running = await run_exporter(config)
    running.exporter.lifecycle.clock = lambda: (NOW[0], NOW[0])  # before the first poll runs
    scheduler = running.exporter.scheduler

    async def poll_all() -> None:
        for key in ("endpoint/10", "worker_group/20", "worker_group/30"):
            await scheduler.poll(key)

    first = await running.wait_for_metrics(
        lambda s: len(series(s, "vastai_endpoint_workers_added_total")) == 2
    )
    zero = [0.0] * (len(BUCKETS) + 1)
    assert lifecycle(first, "10") == {
        "buckets": zero,
        "sum": 0.0,
        "added": 0.0,
        "removed": 0.0,
        "errors": 0.0,
        "seconds": {},
    }
    assert value(first, "vastai_endpoint_workers_added_total", endpoint_name="chat") == 0.0

    # 10 s later: 2 has loaded (a 15 s cold start), 3 is being created; 7 loaded in 9 s.
    at(1010.0)
    both(w(1, "running", 900.0, 800.0), w(2, "running", 1005.0, 990.0), w(3, "creating", 0, 1008))
    fake_vast.set("worker_group", 30, workers(w(7, "running", 1004.0, 995.0)))
    await poll_all()
    second = await running.wait_for_metrics(
        lambda s: value(s, "vastai_endpoint_workers_added_total", endpoint_id="10") == 1
    )
    chat = lifecycle(second, "10")
    assert chat["buckets"] == [1.0] * len(chat["buckets"])  # 15 s: in every bucket
    assert (chat["sum"], chat["added"], chat["removed"], chat["errors"]) == (15.0, 1, 0, 0)
    assert chat["seconds"] == {"running": 20.0, "creating": 10.0}
    img = lifecycle(second, "11")
    assert (img["buckets"][0], img["sum"], img["added"], img["seconds"]) == (
        1.0, 9.0, 0.0, {"running": 10.0})  # fmt: skip

    # A failed poll at 1020 changes nothing ...
    at(1020.0)
    fake_vast.set("endpoint", 10, failure(500, "Internal Server Error"))
    fake_vast.set("worker_group", 20, failure(500, "Internal Server Error"))
    await poll_all()
    failed = await running.wait_for_metrics(
        lambda s: value(s, "vastai_target_up", kind="endpoint", id="10") == 0
    )
    assert lifecycle(failed, "10") == chat

    # ... and the next successful poll counts everything since the one at 1010: 1 is gone,
    # 2 went into error, 3 loaded (17 s), 4 appeared and loaded meanwhile (68 s), 5 appeared
    # with a load that predates the last successful poll (not seen: not observed).
    at(1030.0)
    both(
        w(2, "error", 1005.0, 990.0),
        w(3, "running", 1025.0, 1008.0),
        w(4, "running", 1028.0, 960.0),
        w(5, "running", 600.0, 500.0),
    )
    await poll_all()
    third = await running.wait_for_metrics(
        lambda s: value(s, "vastai_endpoint_workers_added_total", endpoint_id="10") == 3
    )
    chat = lifecycle(third, "10")
    # 15 (le=15), 17 (le=30), 68 (le=120)
    assert chat["buckets"] == [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert (chat["sum"], chat["added"], chat["removed"], chat["errors"]) == (100.0, 3, 1, 1)
    # 10 s x 3 workers, then 20 s (the failed poll is no boundary) x 4 workers
    assert chat["seconds"] == {"running": 80.0, "creating": 10.0, "error": 20.0}
    assert sum(chat["seconds"].values()) == 10 * 3 + 20 * 4

    # Every lifecycle series is labelled by endpoint only: no worker_id anywhere.
    lifecycle_series = [
        labels for (name, labels) in third if name.startswith("vastai_endpoint_") and labels
    ]
    assert all("worker_id" not in dict(labels) for labels in lifecycle_series)


async def test_openmetrics_exposition_of_the_lifecycle_families(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, workers(w(1, "loading", 0, 990.0)))
    running = await run_exporter(
        fast_config(fake_vast.url, polling={"interval": "1h"}, endpoints=[{"id": 10}])
    )
    await running.wait_for_metrics(lambda s: series(s, "vastai_endpoint_workers_added_total"))
    fake_vast.set("endpoint", 10, workers(w(1, "running", 1020.0, 990.0)))
    await running.exporter.scheduler.poll("endpoint/10")
    await running.wait_for_metrics(
        lambda s: value(s, "vastai_endpoint_cold_start_seconds_count", endpoint_id="10") == 1
    )
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    _, text, _ = await running.get("/metrics", headers=headers)
    assert "# TYPE vastai_endpoint_cold_start_seconds histogram" in text
    assert (
        'vastai_endpoint_cold_start_seconds_bucket{endpoint_id="10",endpoint_name="",le="30.0"} 1'
        in text
    )
    assert "# TYPE vastai_endpoint_workers_added counter" in text
    assert text.endswith("# EOF\n")


async def test_a_fresh_endpoint_not_ready_then_cold_starting(
    fake_vast: FakeVast, run_exporter
) -> None:
    """Not ready is a successful poll with no worker: the workers that follow are scale-ups,
    and their cold starts are observed (the demo's fresh endpoint, step by step)."""
    fake_vast.set("endpoint", 10, failure(200, {"error_msg": "endpoint has no workers yet"}))
    at(1000.0)
    running = await run_exporter(
        fast_config(fake_vast.url, polling={"interval": "1h"}, endpoints=[{"id": 10}])
    )
    running.exporter.lifecycle.clock = lambda: (NOW[0], NOW[0])
    await running.wait_for_metrics(lambda s: series(s, "vastai_endpoint_workers_added_total"))
    at(1030.0)
    fake_vast.set("endpoint", 10, workers(w(1, "creating", 0, 1025.0), w(2, "loading", 0, 1020)))
    await running.exporter.scheduler.poll("endpoint/10")
    at(1090.0)
    fake_vast.set("endpoint", 10, workers(w(1, "ready", 1080.0, 1025.0), w(2, "ready", 1070, 1020)))
    await running.exporter.scheduler.poll("endpoint/10")
    samples = await running.wait_for_metrics(
        lambda s: value(s, "vastai_endpoint_cold_start_seconds_count", endpoint_id="10") == 2
    )
    fresh = lifecycle(samples, "10")
    assert (fresh["added"], fresh["removed"], fresh["sum"]) == (2.0, 0.0, 105.0)  # 55 + 50
    assert fresh["buckets"][:3] == [0.0, 0.0, 2.0]  # both in le="60"
    assert fresh["seconds"] == {"creating": 30.0, "loading": 30.0, "ready": 120.0}


async def test_sharded_replicas_count_a_split_endpoint_once(tmp_path) -> None:
    """Endpoint 10 is configured and its groups 21 and 22 too: with three replicas each polls
    one of them (CRC-32 of kind/id mod 3), and only the endpoint's replica counts. Each closes
    in the step it started, at once."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            fast_config(
                "http://127.0.0.1:9",
                polling={"interval": "1h"},
                endpoints=[{"id": 10, "name": "chat"}],
                worker_groups=[{"id": 21, "endpoint_id": 10}, {"id": 22, "endpoint_id": 10}],
            )
        )
    )
    counted = {}
    for index in range(3):
        exporter = Exporter(load_config(config_path), API_KEY, shard=Shard(index, 3))
        exporter.start()
        try:
            polled = [state.target for state in exporter.scheduler.states()]
            counted[index] = sorted(t.key for t in polled if exporter.lifecycle.counts(t))
            assert len(polled) == 1
        finally:
            await close_at_once(exporter)
    assert counted == {0: [], 1: [], 2: ["endpoint/10"]}


async def close_at_once(exporter: Exporter) -> None:
    """Close the exporter, taking no (virtual) time; fail rather than hang when one of its
    tasks outlives its cancellation (as the render loop's did on Python 3.11, CPython issue
    86296, when the cancel came in the step its event was set)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    watchdog = loop.call_later(60, asyncio.current_task().cancel)  # type: ignore[union-attr]
    try:
        await exporter.close()
    except asyncio.CancelledError:
        pytest.fail("Exporter.close() still waits after 60 s")
    finally:
        watchdog.cancel()
    assert loop.time() == started
