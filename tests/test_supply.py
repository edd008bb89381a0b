"""Supply (issue 23): offers matching each polled worker group's search, against the fake API
over HTTP on loopback with the exporter in-process, on virtual time (searches are 6 s apart)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from .fakevast import (
    BUNDLES_PATH,
    LISTING_SECRET,
    WORKERGROUPS_PATH,
    FakeVast,
    endpoint,
    failure,
    offer,
    worker,
    worker_group,
    workers,
)
from .harness import API_KEY, fast_config, parse_metrics, series, value

pytestmark = pytest.mark.virtual_time

RECORDED = json.loads(
    (Path(__file__).parent / "fixtures" / "vastai-cli" / "offer_queries.json").read_text()
)
# A string and an object whose bodies the CLI's search_offers was recorded sending.
STRING = next(c for c in RECORDED["strings"] if c["query"].startswith("reliability > 0.98 num"))
OBJECT = RECORDED["objects"][1]  # RTX 4090 or 3090, at least 2 GPUs, unverified
LIST_QUERY = ["gpu_name=RTX_3090", "reliability > 0.98", "num_gpus=1"]  # = STRING, parsed


def market() -> list[dict[str, Any]]:
    """3090s (1 GPU) at 0.20, 0.25 and 0.40; unverified 4090 pairs at 0.90 and 1.10; and
    offers no group wants."""
    return [
        offer(1, "RTX 3090", 1, 0.25),
        offer(2, "RTX 3090", 1, 0.40),
        offer(3, "RTX 3090", 1, 0.20),
        offer(4, "RTX 3090", 1, 0.10, reliability=0.9),  # not reliable enough
        offer(5, "RTX 3090", 1, 0.05, verified=False),  # excluded by the default filters
        offer(6, "RTX 4090", 2, 1.10, verified=False),
        offer(7, "RTX 4090", 4, 1.90, verified=False),
        offer(8, "RTX 4090", 2, 0.90, verified=False),
        offer(9, "H100 SXM", 8, 20.0),
    ]


def account(fake: FakeVast) -> None:
    """Endpoint 10 "chat" with groups 20 (a string query), 21 (an object), 22 (a list that
    reads as 20's), 23 (unreadable), 24 (no query); endpoint 11 with group 30, not polled."""
    fake.set_account(
        [endpoint(10, "chat"), endpoint(11, "other")],
        [
            worker_group(20, 10, "chat", STRING["query"]),
            worker_group(21, 10, "chat", OBJECT["query"]),
            worker_group(22, 10, "chat", LIST_QUERY),
            worker_group(23, 10, "chat", "gpu_name RTX_4090"),
            worker_group(24, 10, "chat"),
            worker_group(30, 11, "other", "num_gpus=8"),
        ],
    )
    fake.offer_records = market()
    for group in (20, 21, 22, 23, 24):
        fake.set("worker_group", group, workers(worker(group * 100)))


def supply_config(fake: FakeVast, groups: tuple[int, ...] = (20, 21, 22, 23, 24), **supply) -> dict:
    config = fast_config(
        fake.url,
        endpoints=[{"id": 10, "name": "chat"}],
        worker_groups=[{"id": group, "endpoint_id": 10} for group in groups],
        supply={"enabled": True, "interval": "1m", **supply},
    )
    config["vast"]["console_url"] = fake.url
    return config


def group(ident: int) -> dict[str, str]:
    return {"worker_group_id": str(ident), "endpoint_id": "10", "endpoint_name": "chat"}


async def test_offers_per_group_searched_as_the_cli_searches(
    fake_vast: FakeVast, run_exporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account(fake_vast)
    exporter = await run_exporter(supply_config(fake_vast, max_offers=100))
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_supply_read_searches") != {}, timeout=30
    )
    # 20 and 22 read alike: one search serves both. Bodies as vastai 1.9.1 sends them.
    assert sorted(fake_vast.searches(), key=json.dumps) == sorted(
        [STRING["body"], OBJECT["body"]], key=json.dumps
    )
    assert value(samples, "vastai_supply_read_searches") == 2
    for ident in (20, 22):
        assert value(samples, "vastai_worker_group_offers", **group(ident)) == 3
        assert value(samples, "vastai_worker_group_offer_gpus", **group(ident)) == 3
        cheapest = value(
            samples, "vastai_worker_group_offer_min_price_dollars_per_hour", **group(ident)
        )
        median = value(
            samples, "vastai_worker_group_offer_median_price_dollars_per_hour", **group(ident)
        )
        assert (cheapest, median) == (0.20, 0.25)
    assert value(samples, "vastai_worker_group_offers", **group(21)) == 3
    assert value(samples, "vastai_worker_group_offer_gpus", **group(21)) == 8
    assert (
        value(samples, "vastai_worker_group_offer_min_price_dollars_per_hour", **group(21)) == 0.9
    )
    assert (
        value(samples, "vastai_worker_group_offer_median_price_dollars_per_hour", **group(21))
        == 1.1
    )
    # 23's query is unreadable: reported, not searched; 24 has none: no series; 30 not polled.
    valid = {
        dict(k)["worker_group_id"]: v
        for k, v in series(samples, "vastai_worker_group_supply_query_valid").items()
    }
    assert valid == {"20": 1, "21": 1, "22": 1, "23": 0}
    assert series(samples, "vastai_worker_group_offers", **group(23)) == {}
    assert value(samples, "vastai_target_up", kind="supply") == 1
    # Searches 6 s apart; the group list read once, before them.
    searches = [r.at for r in fake_vast.requests_for(BUNDLES_PATH)]
    assert all(b - a >= 6.0 for a, b in itertools.pairwise(searches)), searches
    assert len(fake_vast.requests_for(WORKERGROUPS_PATH)) == 1
    # Nothing of an offer but its price and GPUs; no api_key; the unreadable query said once.
    page = (await exporter.get("/"))[1]
    for text in (await exporter.scrape(), page, caplog.text):
        for secret in ("203.0.113.", "gpu-host.example.org", "Atlantis", "5550001", "7770001",
                       LISTING_SECRET, API_KEY):  # fmt: skip
            assert secret not in text
    assert exporter.log.count("search_query cannot be read") == 1
    assert "<th>supply</th><td>on, every 60s, 100 offers a search</td>" in page


async def test_a_group_without_offers_has_zero_and_no_price(
    fake_vast: FakeVast, run_exporter
) -> None:
    account(fake_vast)
    fake_vast.offer_records = []
    exporter = await run_exporter(supply_config(fake_vast, groups=(20,)))
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_worker_group_offers", **group(20)) != {}, timeout=30
    )
    assert value(samples, "vastai_worker_group_offers", **group(20)) == 0
    assert value(samples, "vastai_worker_group_offer_gpus", **group(20)) == 0
    assert (
        series(samples, "vastai_worker_group_offer_min_price_dollars_per_hour", **group(20)) == {}
    )
    median = "vastai_worker_group_offer_median_price_dollars_per_hour"
    assert series(samples, median, **group(20)) == {}


async def test_max_offers_is_the_limit_asked(fake_vast: FakeVast, run_exporter) -> None:
    account(fake_vast)
    exporter = await run_exporter(supply_config(fake_vast, groups=(20,), max_offers=2))
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_worker_group_offers", **group(20)) != {}, timeout=30
    )
    assert [body["limit"] for body in fake_vast.searches()] == [2]
    assert value(samples, "vastai_worker_group_offers", **group(20)) == 2  # at least 2
    assert (
        value(samples, "vastai_worker_group_offer_min_price_dollars_per_hour", **group(20)) == 0.2
    )


async def test_the_groups_of_a_polled_endpoint_are_searched(
    fake_vast: FakeVast, run_exporter
) -> None:
    """An endpoint target polls its groups' workers: their supply is this replica's too."""
    account(fake_vast)
    fake_vast.set("endpoint", 10, workers(worker(1)))
    exporter = await run_exporter(supply_config(fake_vast, groups=()))
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_supply_read_searches") != {}, timeout=30
    )
    polled = {
        dict(k)["worker_group_id"]
        for k in series(samples, "vastai_worker_group_supply_query_valid")
    }
    assert polled == {"20", "21", "22", "23"}
    assert value(samples, "vastai_worker_group_offers", **group(21)) == 3


async def test_a_failed_search_fails_this_read_alone_and_backs_off(
    fake_vast: FakeVast, run_exporter
) -> None:
    account(fake_vast)
    fake_vast.listings[BUNDLES_PATH] = failure(429, {"error": "search_quota_exceeded"})
    config = supply_config(fake_vast, groups=(20,))
    config["polling"]["interval"] = "1m"  # few polls over the virtual minutes below
    exporter = await run_exporter(config)
    await asyncio.sleep(130)
    samples = parse_metrics(await exporter.scrape())
    errors = value(samples, "vastai_target_poll_errors_total", kind="supply", reason="rate_limited")
    assert errors == 2
    assert value(samples, "vastai_target_up", kind="supply") == 0
    assert value(samples, "vastai_target_up", kind="worker_group", id="20") == 1
    assert series(samples, "vastai_worker_group_offers", **group(20)) == {}
    # The read's second try waited twice its interval (one 429), not the interval.
    first, second = (r.at for r in fake_vast.requests_for(BUNDLES_PATH))
    assert second - first >= 120.0


async def test_a_round_longer_than_the_interval_runs_back_to_back_said_once(
    fake_vast: FakeVast, run_exporter
) -> None:
    """12 distinct searches need 66 s at 10 a minute: more than a 1 m interval."""
    groups = tuple(range(40, 52))
    fake_vast.set_account(
        [endpoint(10, "chat")],
        [worker_group(g, 10, "chat", f"num_gpus={g - 39}") for g in groups],
    )
    fake_vast.offer_records = market()
    for g in groups:
        fake_vast.set("worker_group", g, workers(worker(g)))
    config = supply_config(fake_vast, groups=groups)
    config["polling"]["interval"] = "1m"  # few polls over the virtual minutes below
    exporter = await run_exporter(config)
    # Readiness and the first-round line do not wait for a round that takes minutes.
    await asyncio.sleep(10)
    assert (await exporter.get("/-/ready"))[0] == 200
    assert "first poll round done" in exporter.log
    assert series(parse_metrics(await exporter.scrape()), "vastai_target_up", kind="supply") == {}
    await asyncio.sleep(180)
    assert len(fake_vast.searches()) >= 30
    searches = [r.at for r in fake_vast.requests_for(BUNDLES_PATH)]
    # Back to back: the next round's first search follows the last one by the spacing (and
    # the group list's read), not by a new interval.
    gaps = [b - a for a, b in itertools.pairwise(searches)]
    assert all(6.0 <= gap < 7.0 for gap in gaps), gaps
    assert exporter.log.count("rounds run back to back") == 1


async def test_an_unknown_key_on_the_search_is_auth(fake_vast: FakeVast, run_exporter) -> None:
    """search_offers.yaml: HTTP 404 {"msg": "Invalid user key"}, as the simulator answers it."""
    account(fake_vast)
    fake_vast.listings[BUNDLES_PATH] = failure(
        404, {"success": False, "error": "invalid_user", "msg": "Invalid user key"}
    )
    exporter = await run_exporter(supply_config(fake_vast, groups=(20,)))
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_poll_errors_total", kind="supply", reason="auth") == 1
    )
    assert value(samples, "vastai_target_up", kind="supply") == 0


async def test_the_demo_shows_supply_and_a_group_without_any(run_exporter) -> None:
    """--demo: five worker groups, each searching as its record says (sim/records.py), and
    1005's search (an RTX 4090 with 64 GB of disk) matches no offer of the simulated market."""
    exporter = await run_exporter(None, "--demo")
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_supply_read_searches") != {}, timeout=60
    )
    assert value(samples, "vastai_supply_read_searches") == 5
    offers = {
        dict(labels)["worker_group_id"]: found
        for labels, found in series(samples, "vastai_worker_group_offers").items()
    }
    assert set(offers) == {"1001", "1002", "1003", "1004", "1005"}
    assert offers["1005"] == 0 and all(offers[g] > 0 for g in ("1001", "1002", "1003", "1004"))
    cheapest = {
        dict(labels)["worker_group_id"]: price
        for labels, price in series(
            samples, "vastai_worker_group_offer_min_price_dollars_per_hour"
        ).items()
    }
    assert set(cheapest) == {"1001", "1002", "1003", "1004"}
    assert cheapest["1001"] > cheapest["1002"] > cheapest["1003"]  # H100s, A100s, RTX cards
