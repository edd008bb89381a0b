"""Account billing (issue 13): credit, balance and today's charges, against the fake API over
HTTP on loopback, with the exporter in-process."""

from __future__ import annotations

import itertools
import json
import logging
import time
from urllib.parse import parse_qsl

import pytest

from exporter.config import ConfigError, parse_config
from exporter.reads.billing import (
    BillingSettings,
    Charges,
    add_charges,
    complete_totals,
    day_range,
)

from .fakevast import (
    CHARGES_PATH,
    USER_EMAIL,
    USER_PATH,
    USER_SSH_KEY,
    FakeVast,
    contract,
    failure,
    user_record,
    worker,
    workers,
    wrapper,
)
from .harness import API_KEY, fast_config, series, value

# The exporter runs in this event loop: every wait takes virtual time (tests/virtualtime.py).
pytestmark = pytest.mark.virtual_time


def billing_config(fake: FakeVast) -> dict:
    config = fast_config(
        fake.url,
        endpoints=[{"id": 10, "name": "chat"}],
        worker_groups=[{"id": 20, "endpoint_id": 10}],
        billing={"enabled": True, "interval": "1m"},
    )
    config["vast"]["console_url"] = fake.url
    return config


def serverless_tree() -> list[dict]:
    """Endpoint 10 (groups 20 and 21) and endpoint 11, then an instance and a volume."""
    ep10 = wrapper(
        "endpoint-10",
        [
            wrapper(
                "workergroup-20",
                [
                    contract("instance", 501, gpu=2.0, disk=0.125, bwd=0.01, bwu=0.005),
                    contract("instance", 502, gpu=1.0, disk=0.125),
                ],
                endpoint_id=10,
            ),
            wrapper("workergroup-21", [contract("instance", 503, disk=0.25)], endpoint_id=10),
        ],
    )
    ep11 = wrapper(
        "endpoint-11",
        [wrapper("workergroup-31", [contract("instance", 601, gpu=0.5)], endpoint_id=11)],
    )
    others = [contract("instance", 700, gpu=4.0, disk=0.5), contract("volume", 9, disk=0.75)]
    return [ep10, ep11, *others]


async def test_credit_and_charges_per_endpoint_group_and_type(
    fake_vast: FakeVast, run_exporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_vast.set("endpoint", 10, workers(worker(501)))
    fake_vast.set("worker_group", 20, workers(worker(501)))
    fake_vast.charge_nodes = serverless_tree()
    fake_vast.charges_page_size = 2  # two pages
    before = time.time()
    exporter = await run_exporter(billing_config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_account_credit_dollars") != {}, timeout=10
    )
    # Worker 501 of endpoint 10 is worker 501 of its group 20: one worker.
    assert (await exporter.wait_for_log("first poll round done")).endswith(" workers=1")
    assert value(samples, "vastai_account_credit_dollars") == 120.5
    assert value(samples, "vastai_account_balance_dollars") == -3.25
    ep = {"endpoint_id": "10", "endpoint_name": "chat"}
    expected = {"gpu": 3.0, "disk": 0.5, "bwd": 0.01, "bwu": 0.005, "total": 3.515}
    for kind, amount in expected.items():
        got = value(samples, "vastai_endpoint_charges_today_dollars", type=kind, **ep)
        assert got == pytest.approx(amount), kind
    group = {"worker_group_id": "20", **ep}
    assert value(samples, "vastai_worker_group_charges_today_dollars", type="gpu", **group) == 3.0
    assert value(
        samples, "vastai_worker_group_charges_today_dollars", type="total", **group
    ) == pytest.approx(3.265)
    other = {"worker_group_id": "21", "endpoint_id": "10", "endpoint_name": "chat"}
    assert value(samples, "vastai_worker_group_charges_today_dollars", type="disk", **other) == 0.25
    # Endpoint 11 is no target here: exported with its id, without a name.
    assert value(
        samples, "vastai_endpoint_charges_today_dollars", endpoint_id="11", type="total"
    ) == pytest.approx(0.5)
    account = {"gpu": 7.5, "disk": 1.75, "bwd": 0.01, "bwu": 0.005, "total": 9.265}
    for kind, amount in account.items():
        got = value(samples, "vastai_account_charges_today_dollars", type=kind)
        assert got == pytest.approx(amount), kind
    assert value(samples, "vastai_target_up", kind="billing") == 1
    # Paged to the end, the day range in UTC, tree format.
    queries = [dict(parse_qsl(r.query)) for r in fake_vast.requests if r.path == CHARGES_PATH]
    tokens = [q.get("after_token") for q in queries]
    assert len(tokens) == 2 and tokens[0] is None and tokens[1], tokens
    day = json.loads(queries[0]["select_filters"])["day"]
    assert day["gte"] % 86400 == 0 and day["gte"] <= before < day["gte"] + 86400
    assert day["gte"] <= day["lte"] <= time.time()
    assert queries[0]["format"] == "tree" and queries[0]["limit"] == "500"
    # Each path's calls at least a second apart (Vast limits per path: exporter/pacing.py).
    for path in (USER_PATH, CHARGES_PATH):
        calls = [r.at for r in fake_vast.requests if r.path == path]
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(calls)), path
    # Personal data of the user record: nowhere.
    page = (await exporter.get("/"))[1]
    for text in (await exporter.scrape(), page, caplog.text):
        for secret in (USER_EMAIL, USER_SSH_KEY, "someone", API_KEY):
            assert secret not in text


async def test_a_key_without_billing_permission_fails_this_read_alone(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.set("worker_group", 20, workers(worker(1)))
    fake_vast.charges_refusal = failure(
        403, {"success": False, "error": "auth_error", "msg": "This action requires login."}
    )
    exporter = await run_exporter(billing_config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_poll_errors_total", kind="billing", reason="auth") == 1,
        timeout=10,
    )
    assert value(samples, "vastai_target_up", kind="billing") == 0
    assert value(samples, "vastai_target_up", kind="endpoint", id="10") == 1
    assert value(samples, "vastai_target_workers", kind="endpoint", id="10") == 1
    assert series(samples, "vastai_endpoint_charges_today_dollars") == {}


async def test_an_unknown_key_is_auth_and_rate_limits_back_off(fake_vast: FakeVast, run_exporter):
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.listings[USER_PATH] = failure(
        404, {"success": False, "error": "auth_error", "msg": "Invalid user key"}
    )
    exporter = await run_exporter(billing_config(fake_vast))
    await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_poll_errors_total", kind="billing", reason="auth") == 1
    )
    state = next(s for s in exporter.exporter.states() if s.target.kind == "billing")
    assert "Invalid user key" in state.last_error_message


def test_billing_config() -> None:
    base = {"endpoints": [{"id": 1}]}
    assert parse_config(base).billing == BillingSettings(False, 300.0)
    assert parse_config({**base, "billing": {"enabled": True}}).billing == BillingSettings(
        True, 300.0
    )
    for bad in ({"interval": "30s"}, {"enabled": "yes"}, {"every": "5m"}):
        with pytest.raises(ConfigError) as caught:
            parse_config({**base, "billing": bad})
        assert str(caught.value.key).startswith("billing.")


def test_day_range_is_the_utc_day() -> None:
    assert day_range(86400 * 3 + 5000.7) == (86400 * 3, 86400 * 3 + 5000)
    assert day_range(86400 * 3) == (86400 * 3, 86400 * 3)


def test_groups_without_an_endpoint_wrapper_count_under_their_metadata_endpoint() -> None:
    charges = Charges()
    add_charges(
        charges,
        [
            wrapper("workergroup-7", [contract("instance", 1, gpu=1.0, disk=0.5)], endpoint_id=3),
            {"type": "instance", "source": "instance-9", "amount": "bad", "items": "nope"},
            {"type": "serverless", "source": "endpoint-x", "amount": 1.0, "items": [None, 5]},
        ],
    )
    complete_totals(charges)
    assert charges.groups == {7: (3, {"total": 1.5, "gpu": 1.0, "disk": 0.5})}
    assert charges.endpoints == {3: {"gpu": 1.0, "disk": 0.5, "total": 1.5}}
    assert charges.account["total"] == 2.5 and charges.account["gpu"] == 1.0


def test_user_record_parsing_keeps_only_money() -> None:
    from exporter.reads.billing import parse_user

    assert parse_user(user_record(credit=5.0, balance=None)) == (5.0, None)
    assert parse_user({"credit": "12.5", "balance": 3, "email": "x@y"}) == (12.5, 3.0)
