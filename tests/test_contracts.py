"""Contracts (issue 23): hosts' pending price increases on the polled workers, against the fake
API over HTTP on loopback with the exporter in-process."""

from __future__ import annotations

import logging
import time

import pytest

from exporter.parsing import PollError
from exporter.reads.contracts import PendingIncrease, parse_pending

from .fakevast import (
    PENDING_PATH,
    FakeVast,
    failure,
    price_increase,
    worker,
    workers,
)
from .harness import API_KEY, fast_config, series, value

pytestmark = pytest.mark.virtual_time

END, OFFERED_END = 1_796_500_000.0, 1_804_276_000.0


def contracts_config(fake: FakeVast) -> dict:
    config = fast_config(
        fake.url,
        endpoints=[{"id": 10, "name": "chat"}],
        worker_groups=[{"id": 20, "endpoint_id": 10}],
        contracts={"enabled": True, "interval": "1m"},
    )
    config["vast"]["console_url"] = fake.url
    return config


def worker_labels(worker_id: str) -> dict[str, str]:
    return {
        "endpoint_id": "10",
        "endpoint_name": "chat",
        "worker_group_id": "20",
        "worker_id": worker_id,
    }


def test_rows_are_read_per_gpu_per_hour_and_a_null_new_price_is_the_old() -> None:
    rows = [
        price_increase(501, 0.36, 0.45, END, OFFERED_END),
        price_increase(502, 0.5, None, END, None),  # only other prices rise
        price_increase(503, None, None, None, None),
        price_increase("504", 1.0, 1.2, str(END), OFFERED_END, created_at=10.0),
        price_increase(504, 1.0, 1.5, END, OFFERED_END, created_at=20.0),  # newer: wins
        price_increase(None, 1.0, 2.0, END, OFFERED_END),  # no contract: skipped
    ]
    found = parse_pending({"success": True, "count": 6, "pending_price_increases": rows})
    assert found["501"] == PendingIncrease(0.36, 0.45, END, OFFERED_END, 1796000000.0)
    assert (found["502"].old_gpu, found["502"].new_gpu) == (0.5, 0.5)
    assert found["502"].offered_end is None
    assert (found["503"].old_gpu, found["503"].new_gpu, found["503"].contract_end) == (
        None,
        None,
        None,
    )
    assert found["504"].new_gpu == pytest.approx(1.5)
    assert set(found) == {"501", "502", "503", "504"}
    assert parse_pending({"success": True, "pending_price_increases": []}) == {}
    for payload in ({"success": False, "msg": "nope"}, {"pending_price_increases": "x"}, [1]):
        with pytest.raises(PollError):
            parse_pending(payload)


async def test_a_polled_worker_s_pending_increase_and_contract_end(
    fake_vast: FakeVast, run_exporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_vast.set("endpoint", 10, workers(worker(501), worker(502), worker(503)))
    fake_vast.set("worker_group", 20, workers(worker(501), worker(502), worker(503)))
    fake_vast.price_increase_rows = [
        price_increase(501, 0.36, 0.45, END, OFFERED_END),
        price_increase(502, 0.5, None, END + 3600, None),
        price_increase(9_999_001, 0.2, 0.3, END, OFFERED_END),  # not a polled worker
    ]
    exporter = await run_exporter(contracts_config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_worker_pending_price_increase") != {}
    )
    pending = {
        dict(labels)["worker_id"]: found
        for labels, found in series(samples, "vastai_worker_pending_price_increase").items()
    }
    assert pending == {"501": 1, "502": 1}
    w501, w502 = worker_labels("501"), worker_labels("502")
    price = "vastai_worker_gpu_price_per_gpu_dollars_per_hour"
    assert value(samples, price, price="old", **w501) == pytest.approx(0.36)
    assert value(samples, price, price="new", **w501) == pytest.approx(0.45)
    assert value(samples, price, price="new", **w502) == value(samples, price, price="old", **w502)
    assert value(samples, "vastai_worker_contract_end_timestamp_seconds", **w501) == END
    assert value(samples, "vastai_worker_contract_end_timestamp_seconds", **w502) == END + 3600
    offered = "vastai_worker_contract_offered_end_timestamp_seconds"
    assert value(samples, offered, **w501) == OFFERED_END
    assert series(samples, offered, **w502) == {}
    assert value(samples, "vastai_target_up", kind="contracts") == 1
    text = await exporter.scrape()
    assert "9999001" not in text and "424242" not in text  # another instance, the host
    assert API_KEY not in text + caplog.text
    [request] = fake_vast.requests_for(PENDING_PATH)[:1]
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_a_key_without_permission_fails_this_read_alone(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.set("worker_group", 20, workers(worker(1)))
    fake_vast.listings[PENDING_PATH] = failure(
        403, {"success": False, "error": "forbidden", "msg": "key lacks permission"}
    )
    exporter = await run_exporter(contracts_config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_poll_errors_total", kind="contracts", reason="auth") == 1
    )
    assert value(samples, "vastai_target_up", kind="contracts") == 0
    assert value(samples, "vastai_target_up", kind="endpoint", id="10") == 1
    assert series(samples, "vastai_worker_cur_load") != {}
    assert series(samples, "vastai_worker_pending_price_increase") == {}


async def test_the_demo_shows_a_contract_ending_within_a_day(run_exporter) -> None:
    """--demo: the spare group's oldest worker has a pending increase (GPU +30%) ending 20 h
    after the simulation starts; group 1001's oldest one only a storage increase, 4 days off."""
    exporter = await run_exporter(None, "--demo")
    samples = await exporter.wait_for_metrics(
        lambda s: len(series(s, "vastai_worker_pending_price_increase")) == 2, timeout=60
    )
    ends = {
        dict(labels)["worker_group_id"]: end
        for labels, end in series(samples, "vastai_worker_contract_end_timestamp_seconds").items()
    }
    assert set(ends) == {"1001", "1002"}
    assert 0 < ends["1002"] - time.time() < 86400 < ends["1001"] - time.time()
    prices = {
        (dict(labels)["worker_group_id"], dict(labels)["price"]): found
        for labels, found in series(
            samples, "vastai_worker_gpu_price_per_gpu_dollars_per_hour"
        ).items()
    }
    assert prices[("1002", "new")] == pytest.approx(prices[("1002", "old")] * 1.3, rel=1e-5)
    assert prices[("1001", "new")] == prices[("1001", "old")]
