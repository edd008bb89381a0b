"""What the real Vast API sends and we used to misread: not-ready answers, bare-string errors,
the new worker and listing fields, and how hard the exporter uses the key (issue 10).

Each test runs the exporter in-process against the fake API over HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from exporter.traffic import TokenBucket

from .fakevast import (
    AUTOGROUP_PATH,
    ENDPOINT_PATH,
    ENDPTJOBS_PATH,
    WORKERGROUPS_PATH,
    FakeVast,
    Reply,
    endpoint,
    failure,
    rotating,
    worker,
    worker_group,
    workers,
)
from .harness import API_KEY, Samples, fast_config, parse_metrics, series, value

NOT_READY = failure(200, {"error_msg": f"Endpoint not ready for query (key {API_KEY})"})


@pytest.mark.virtual_time
async def test_not_ready_is_up_with_no_workers_and_no_error(
    fake_vast: FakeVast, run_exporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answers = {"now": workers(worker(1), worker(2))}
    fake_vast.set("endpoint", 10, lambda: answers["now"])
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10, "name": "a"}]))
    await exporter.wait_for_metrics(lambda s: value(s, "vastai_target_workers", id="10") == 2)

    answers["now"] = NOT_READY
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_not_ready", id="10") == 1
    )
    first_success = value(samples, "vastai_target_last_success_timestamp_seconds", id="10")
    assert value(samples, "vastai_target_up", id="10") == 1
    assert value(samples, "vastai_target_workers", id="10") == 0
    assert series(samples, "vastai_worker_status") == {}  # the previous workers are dropped
    assert set(series(samples, "vastai_target_poll_errors_total", id="10").values()) == {0.0}
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_last_success_timestamp_seconds", id="10") > first_success
    )
    assert value(samples, "vastai_target_not_ready", id="10") == 1

    status, page, _ = await exporter.get("/")
    assert status == 200 and "Endpoint not ready for query" in page and "not ready" in page
    assert API_KEY not in page

    answers["now"] = workers(worker(3))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_not_ready", id="10") == 0
    )
    assert value(samples, "vastai_target_workers", id="10") == 1
    entered = [r for r in caplog.records if r.getMessage().startswith("target not ready")]
    left = [r for r in caplog.records if r.getMessage() == "target ready"]
    assert len(entered) == 1 and len(left) == 1  # one line each way, not one per poll
    assert "Endpoint not ready for query" in entered[0].fields["message"]
    assert API_KEY not in entered[0].fields["message"]


@pytest.mark.virtual_time
async def test_a_failure_after_not_ready_clears_the_state(fake_vast: FakeVast, run_exporter):
    answers = {"now": NOT_READY}
    fake_vast.set("worker_group", 20, lambda: answers["now"])
    exporter = await run_exporter(fast_config(fake_vast.url, worker_groups=[{"id": 20}]))
    await exporter.wait_for_metrics(lambda s: value(s, "vastai_target_not_ready", id="20") == 1)
    answers["now"] = failure(500, "boom")
    samples = await exporter.wait_for_metrics(lambda s: value(s, "vastai_target_up", id="20") == 0)
    assert value(samples, "vastai_target_not_ready", id="20") == 0


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            b'"authenticate_endpoint_apikey: invalid api_key or endpoint vLLM-Qwen3-8B not found"',
            "auth",
        ),
        (
            b'"authenticate_workergroup_apikey: invalid api_key or workergroup 12345 not found"',
            "auth",
        ),
        (b'"endpoint 10 not found"', "not_found"),
        (b'"something else went wrong"', "api_error"),
    ],
)
async def test_bare_string_bodies_are_classified_with_their_text(
    fake_vast: FakeVast, run_exporter, body: bytes, reason: str
) -> None:
    fake_vast.set("endpoint", 10, failure(200, body))
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_poll_errors_total", id="10", reason=reason) >= 1
    )
    state = next(s for s in exporter.exporter.scheduler.states() if s.target.id == 10)
    assert state.last_error_message == body.decode().strip('"')


async def test_new_worker_series_with_their_units(fake_vast: FakeVast, run_exporter) -> None:
    fake_vast.set(
        "worker_group",
        20,
        workers(
            worker(
                1,
                disk_usage=2.5,
                new_load=4.0,
                started_at=1700000000.5,
                created_at="2023-10-01T12:00:00Z",
                loop_lag_max=0.125,
                warnings=["a", "b", "c"],
                deployment_version_id=42,
                url="http://192.168.1.10:8000",
            ),
            {
                "id": 2,
                "status": "running",
                "url": "http://192.168.1.11:8000",
                "created_at": "2023-10-01T12:00:00",
            },
            shape="object",
        ),
    )
    exporter = await run_exporter(fast_config(fake_vast.url, worker_groups=[{"id": 20}]))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_workers", id="20") == 2
    )
    one = {"worker_id": "1"}
    assert value(samples, "vastai_worker_disk_usage_bytes", **one) == 2.5 * 2**30
    assert value(samples, "vastai_worker_new_load", **one) == 4.0
    assert value(samples, "vastai_worker_started_timestamp_seconds", **one) == 1700000000.5
    assert value(samples, "vastai_worker_created_timestamp_seconds", **one) == 1696161600.0
    assert value(samples, "vastai_worker_loop_lag_max_seconds", **one) == 0.125
    assert value(samples, "vastai_worker_warnings", **one) == 3
    assert value(samples, "vastai_worker_deployment_info", deployment_version_id="42") == 1
    # The documented {"workers": [...]} shape: id, status, url, created_at only.
    two = {"worker_id": "2"}
    assert value(samples, "vastai_worker_created_timestamp_seconds", **two) == 1696161600.0
    assert series(samples, "vastai_worker_new_load", **two) == {}
    assert series(samples, "vastai_worker_deployment_info", **two) == {}
    assert "192.168" not in await exporter.scrape()


async def test_listing_settings_and_template_labels(fake_vast: FakeVast, run_exporter) -> None:
    fake_vast.set_account(
        [
            endpoint(
                1,
                "prod",
                max_queue_time=30.0,
                target_queue_time="10",
                inactivity_timeout=600,
                min_cold_load=5.5,
            )
        ],
        [worker_group(11, 1, "prod")],
    )
    fake_vast.set("worker_group", 11, workers(worker(5)))
    config = fast_config(fake_vast.url, discovery={"enabled": True, "interval": "1m"})
    config["vast"]["console_url"] = fake_vast.url
    exporter = await run_exporter(config)
    samples = await exporter.wait_for_metrics(
        lambda s: (
            value(s, "vastai_target_workers", id="11") == 1
            and series(s, "vastai_worker_group_info") != {}
        )
    )
    ep = {"endpoint_id": "1", "endpoint_name": "prod"}
    assert value(samples, "vastai_endpoint_max_queue_time_seconds", **ep) == 30.0
    assert value(samples, "vastai_endpoint_target_queue_time_seconds", **ep) == 10.0
    assert value(samples, "vastai_endpoint_inactivity_timeout_seconds", **ep) == 600.0
    assert value(samples, "vastai_endpoint_min_cold_load", **ep) == 5.5
    group = {"worker_group_id": "11", **ep}
    assert value(samples, "vastai_worker_group_test_workers", **group) == 3
    assert value(samples, "vastai_worker_group_gpu_ram_bytes", **group) == 24 * 1000 * 2**20
    assert (
        value(samples, "vastai_worker_group_info", template_id="7", template_hash="abc123", **group)
        == 1
    )


async def test_every_request_is_counted_by_host_route_and_code(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, rotating([workers(worker(1)), failure(429, "slow down")]))
    fake_vast.set("worker_group", 20, workers(worker(2)))
    fake_vast.set("worker_group", 21, failure(400, "workergroup 21 not found"))
    fake_vast.set_account([endpoint(10, "a")], [])
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": 10}],
        worker_groups=[{"id": 20}, {"id": 21}],
        discovery={"enabled": True, "interval": "1m"},
    )
    config["vast"]["console_url"] = fake_vast.url
    exporter = await run_exporter(config)

    def counts(samples: Samples) -> dict[tuple[str, str, str], float]:
        return {
            (d["host"], d["path"], d["code"]): v
            for labels, v in series(samples, "vastai_exporter_api_requests_total").items()
            for d in [dict(labels)]
        }

    samples = await exporter.wait_for_metrics(
        lambda s: (
            counts(s).get(("api", ENDPOINT_PATH, "429"), 0) >= 1
            and counts(s).get(("api", AUTOGROUP_PATH, "400"), 0) >= 1
        )
    )
    found = counts(samples)
    assert found[("api", ENDPOINT_PATH, "200")] >= 1
    assert found[("api", AUTOGROUP_PATH, "200")] >= 1
    assert found[("console", ENDPTJOBS_PATH, "200")] == 1
    assert found[("console", WORKERGROUPS_PATH, "200")] == 1
    # The counter agrees with what the fake received, path by path.
    for path in (ENDPOINT_PATH, AUTOGROUP_PATH):
        now = counts(parse_metrics(await exporter.scrape()))
        sent = sum(v for (_, p, _), v in now.items() if p == path)
        assert sent <= len(fake_vast.requests_for(path)) <= sent + 2  # polls in flight


@pytest.mark.virtual_time
async def test_timeouts_and_refused_connections_are_counted_without_a_code(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, Reply(body=[], delay=3.0))
    config = fast_config(fake_vast.url, endpoints=[{"id": 10}], worker_groups=[{"id": 20}])
    config["vast"]["timeout"] = "200ms"
    config["vast"]["console_url"] = "http://127.0.0.1:9"  # nothing listens there
    config["discovery"] = {"enabled": True, "interval": "1m"}
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(
        lambda s: (
            value(
                s,
                "vastai_exporter_api_requests_total",
                host="api",
                path=ENDPOINT_PATH,
                code="timeout",
            )
            >= 1
            and value(
                s,
                "vastai_exporter_api_requests_total",
                host="console",
                path=ENDPTJOBS_PATH,
                code="connection",
            )
            == 1
        )
    )


@pytest.mark.virtual_time
async def test_max_requests_per_second_spreads_the_first_round(
    fake_vast: FakeVast, run_exporter
) -> None:
    for target_id in range(1, 9):
        fake_vast.set("endpoint", target_id, workers(worker(target_id)))
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": i} for i in range(1, 9)],
        polling={"interval": "1m", "concurrency": 8, "max_requests_per_second": 20},
    )
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(lambda s: len(series(s, "vastai_target_up")) == 8)
    times = sorted(r.at for r in fake_vast.requests_for(ENDPOINT_PATH))
    # One token to start with, then one every 50 ms (virtual time: exact instants).
    assert [round(t - times[0], 9) for t in times] == [round(0.05 * i, 9) for i in range(8)]


@pytest.mark.virtual_time
async def test_a_reload_applies_a_new_request_rate_at_once(
    fake_vast: FakeVast, run_exporter
) -> None:
    for target_id in (1, 2, 3):
        fake_vast.set("endpoint", target_id, workers(worker(target_id)))
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": 1}, {"id": 2}, {"id": 3}],
        polling={"interval": "1m", "max_requests_per_second": 0.01},  # one per 100 s
    )
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(lambda s: len(series(s, "vastai_target_up")) == 1)
    await asyncio.sleep(30)
    assert len(fake_vast.requests_for(ENDPOINT_PATH)) == 1  # the others wait for tokens
    config["polling"]["max_requests_per_second"] = 0
    exporter.write_config(config)
    reloaded_at = asyncio.get_running_loop().time()
    assert await exporter.exporter.reload() is None
    await exporter.wait_for_metrics(lambda s: len(series(s, "vastai_target_up")) == 3, timeout=2)
    later = [r.at for r in fake_vast.requests_for(ENDPOINT_PATH)][1:]
    assert later == [reloaded_at, reloaded_at]  # at once, not 100 s later


async def test_token_bucket_on_virtual_time() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, clock=lambda: now[0])
    await bucket.acquire()  # the first token is there at once
    waiter = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    now[0] = 0.5  # half a second at 2/s: one token
    bucket.set_rate(2.0 + 1e-9)  # wakes the waiter to look again
    await asyncio.wait_for(waiter, 1)
    now[0] = 100.0  # a long pause fills at most one second of tokens
    for _ in range(2):
        await asyncio.wait_for(bucket.acquire(), 0.1)
    third = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0.01)
    assert not third.done()
    bucket.set_rate(0)  # no limit: waiters go at once
    await asyncio.wait_for(third, 1)


async def test_token_bucket_counts_a_token_short_only_by_rounding_as_whole() -> None:
    """20/s for 0.05 s adds up to 0.9999999999999998 tokens: that is a token, not a wait of
    1e-17 s that a clock never ends (the acquire loop would spin)."""
    now = [0.0]
    bucket = TokenBucket(20.0, clock=lambda: now[0])
    for step in range(8):
        now[0] = round(step * 0.05, 9)  # a nanosecond clock, as time.monotonic_ns()
        await asyncio.wait_for(bucket.acquire(), 0.5)
