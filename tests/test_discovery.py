"""Account discovery, endpoint settings as metrics, and sharding, against the fake API."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest
import yaml

from exporter.config import ConfigError, parse_config
from exporter.parsing import EndpointInfo, GroupInfo
from exporter.reads.listing import Account, DiscoverySettings, discovered_targets
from exporter.targets import Shard, Target, merge_targets

from .fakevast import (
    AUTOJOBS_PATH,
    ENDPTJOBS_PATH,
    LISTING_SECRET,
    WORKERGROUPS_PATH,
    FakeVast,
    endpoint,
    failure,
    worker,
    worker_group,
    workers,
)
from .harness import API_KEY, fast_config, series, value


def worker_labels(samples: dict) -> dict[str, dict[str, str]]:
    found = series(samples, "vastai_worker_status")
    return {dict(labels)["worker_id"]: dict(labels) for labels in found}


def polled(samples: dict) -> set[str]:
    return {
        f"{dict(labels)['kind']}/{dict(labels)['id']}"
        for labels in series(samples, "vastai_target_up")
        if dict(labels)["kind"] != "listing"
    }


def account(fake: FakeVast) -> None:
    """prod-a (groups 11, 12), prod-b (no group), dev-c (group 31), prod-x-test (group 41)."""
    fake.set_account(
        [
            endpoint(1, "prod-a", max_workers=20, min_load=150.5, endpoint_state="ACTIVE"),
            endpoint(2, "prod-b", target_util=0.75, cold_workers=None),
            endpoint(3, "dev-c"),
            endpoint(4, "prod-x-test"),
        ],
        [
            worker_group(11, 1, "prod-a"),
            worker_group(12, 1, "prod-a"),
            worker_group(31, 3, "dev-c"),
            worker_group(41, 4, "prod-x-test"),
        ],
    )
    fake.set("worker_group", 11, workers(worker(1101)))
    fake.set("worker_group", 12, workers(worker(1201), shape="object"))
    fake.set("endpoint", 2, workers(worker(2001)))
    fake.set("worker_group", 31, workers(worker(3101)))
    fake.set("worker_group", 41, workers(worker(4101)))


def discovery_config(fake: FakeVast, **discovery: object) -> dict:
    settings = {"enabled": True, "interval": "1s", **discovery}
    return fast_config(fake.url, vast={"console_url": fake.url}, discovery=settings)


@pytest.mark.virtual_time
async def test_discovery_polls_what_the_listing_shows(fake_vast, run_exporter) -> None:
    account(fake_vast)
    exporter = await run_exporter(discovery_config(fake_vast, include="^prod-", exclude="-test$"))
    samples = await exporter.wait_for_metrics(
        lambda s: set(worker_labels(s)) == {"1101", "1201", "2001"}
    )
    assert polled(samples) == {"worker_group/11", "worker_group/12", "endpoint/2"}
    assert worker_labels(samples)["1101"] == {
        "endpoint_id": "1",
        "endpoint_name": "prod-a",
        "worker_group_id": "11",
        "worker_id": "1101",
        "status": "running",
    }
    assert worker_labels(samples)["2001"]["endpoint_name"] == "prod-b"
    assert value(samples, "vastai_target_up", kind="listing", id="account") == 1.0

    # endpoint settings, for wanted endpoints only
    assert value(samples, "vastai_endpoint_max_workers", endpoint_id="1") == 20.0
    assert value(samples, "vastai_endpoint_min_load", endpoint_id="1") == 150.5
    assert value(samples, "vastai_endpoint_target_util", endpoint_id="2") == 0.75
    assert value(samples, "vastai_endpoint_cold_mult", endpoint_name="prod-a") == 2.5
    assert series(samples, "vastai_endpoint_cold_workers", endpoint_id="2") == {}  # null
    assert value(samples, "vastai_endpoint_info", endpoint_id="1", endpoint_state="active") == 1
    assert {dict(k)["endpoint_id"] for k in series(samples, "vastai_endpoint_info")} == {"1", "2"}
    groups = {dict(k)["worker_group_id"] for k in series(samples, "vastai_worker_group_info")}
    assert groups == {"11", "12"}

    # the listing's api_key fields are secrets
    page = (await exporter.get("/"))[1]
    for text in (await exporter.scrape(), page, exporter.log):
        assert LISTING_SECRET not in text and API_KEY not in text
    assert await exporter.stop() == 0
    assert LISTING_SECRET not in exporter.log


@pytest.mark.virtual_time
async def test_listing_is_read_no_more_often_than_its_interval(fake_vast, run_exporter) -> None:
    account(fake_vast)
    # 2 s: the group list is paced 2 s apart (show_autogroup.yaml's threshold), so a shorter
    # interval could not be kept
    exporter = await run_exporter(discovery_config(fake_vast, interval="2s"))
    await asyncio.sleep(7)
    assert await exporter.stop() == 0
    reads = [r.at for r in fake_vast.requests if r.path == ENDPTJOBS_PATH]
    # at 0 s, then every 2 s stretched by the jitter (at most 5%, never shortened): 4 reads;
    # the upper bound allows the request's transit to the fake (real socket I/O), not less;
    # 1e-9 below 2 s: a difference of two instants rounds (2.040906657 - 1.040906657 < 1.0)
    assert len(reads) == 4 and reads[0] == 0.0
    assert all(2.0 - 1e-9 <= b - a <= 2.1 for a, b in itertools.pairwise(reads)), reads


@pytest.mark.virtual_time
async def test_listing_backs_off_on_429(fake_vast, run_exporter) -> None:
    account(fake_vast)
    fake_vast.listings[ENDPTJOBS_PATH] = failure(429, "API requests too frequent")
    fake_vast.set("endpoint", 9, workers(worker(9)))
    config = discovery_config(fake_vast, interval="1s")
    config["endpoints"] = [{"id": 9}]
    exporter = await run_exporter(config)
    await asyncio.sleep(3.5)
    samples = await exporter.wait_for_metrics(lambda s: True)
    assert await exporter.stop() == 0
    reads = [r.at for r in fake_vast.requests if r.path == ENDPTJOBS_PATH]
    assert reads == [0.0, 2.0]  # 1 s doubled after one 429; the next one would be at 6 s
    assert value(samples, "vastai_target_poll_errors_total", kind="listing", reason="rate_limited")
    assert polled(samples) == {"endpoint/9"}  # configured targets are polled regardless


@pytest.mark.virtual_time
async def test_endpoints_added_and_deleted_while_running(fake_vast, run_exporter) -> None:
    account(fake_vast)
    exporter = await run_exporter(discovery_config(fake_vast))
    await exporter.wait_for_metrics(lambda s: "3101" in worker_labels(s))
    fake_vast.set_account(
        [endpoint(1, "prod-a"), endpoint(5, "new-e")],
        [worker_group(11, 1, "prod-a"), worker_group(51, 5, "new-e")],
    )
    fake_vast.set("worker_group", 51, workers(worker(5101)))
    samples = await exporter.wait_for_metrics(
        lambda s: set(worker_labels(s)) == {"1101", "5101"}, timeout=5
    )
    assert polled(samples) == {"worker_group/11", "worker_group/51"}
    assert {dict(k)["endpoint_id"] for k in series(samples, "vastai_endpoint_info")} == {"1", "5"}
    assert series(samples, "vastai_target_poll_errors_total", id="31") == {}


@pytest.mark.virtual_time
async def test_failing_listing_keeps_the_last_targets(fake_vast, run_exporter) -> None:
    account(fake_vast)
    exporter = await run_exporter(discovery_config(fake_vast))
    await exporter.wait_for_metrics(lambda s: len(polled(s)) == 5)
    fake_vast.listings[ENDPTJOBS_PATH] = failure(500, "Internal Server Error")
    samples = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_up", kind="listing") == 0.0, timeout=5
    )
    assert len(polled(samples)) == 5 and len(worker_labels(samples)) == 5
    assert value(samples, "vastai_target_poll_errors_total", kind="listing", reason="server_error")
    assert "kind=listing" in exporter.log and "reason=server_error" in exporter.log


@pytest.mark.virtual_time
async def test_no_endpoints_and_the_older_groups_path(run_exporter) -> None:
    fake = await FakeVast(API_KEY).start()
    try:
        fake.listing_paths = (ENDPTJOBS_PATH, AUTOJOBS_PATH)  # /workergroups/ answers 404
        # The form seen in practice (vast-api.md); the simulator answers the OpenAPI's JSON one,
        # which test_fixtures.py's endptjobs.400.json covers.
        fake.listings[ENDPTJOBS_PATH] = failure(400, "No endpoints for user 42 found.")
        fake.set("endpoint", 7, workers(worker(7)))
        config = discovery_config(fake)
        config["endpoints"] = [{"id": 7, "name": "mine"}]
        exporter = await run_exporter(config)
        samples = await exporter.wait_for_metrics(
            lambda s: value(s, "vastai_target_up", kind="listing") == 1.0
        )
        assert polled(samples) == {"endpoint/7"}  # HTTP 400 "No endpoints ..." = none
        del fake.listings[ENDPTJOBS_PATH]
        fake.set_account([endpoint(8, "e8")], [worker_group(81, 8, "e8")])
        fake.set("worker_group", 81, workers(worker(81)))
        samples = await exporter.wait_for_metrics(lambda s: "81" in worker_labels(s), timeout=5)
        assert worker_labels(samples)["81"]["endpoint_name"] == "e8"
        assert any(r.path == AUTOJOBS_PATH for r in fake.requests)
        assert any(r.path == WORKERGROUPS_PATH for r in fake.requests)
    finally:
        await fake.close()


@pytest.mark.virtual_time
async def test_configured_names_win_over_the_listing(fake_vast, run_exporter) -> None:
    account(fake_vast)
    config = discovery_config(fake_vast, include="^prod-a$")
    config["endpoints"] = [{"id": 1, "name": "chat"}]
    fake_vast.set("endpoint", 1, workers(worker(1101), worker(1999)))
    exporter = await run_exporter(config)
    samples = await exporter.wait_for_metrics(
        lambda s: set(worker_labels(s)) == {"1101", "1201", "1999"}
    )
    assert {labels["endpoint_name"] for labels in worker_labels(samples).values()} == {"chat"}
    assert worker_labels(samples)["1101"]["worker_group_id"] == "11"
    assert value(samples, "vastai_endpoint_info", endpoint_id="1", endpoint_name="chat") == 1


@pytest.mark.virtual_time
async def test_two_shards_split_40_targets(fake_vast, run_exporter, tmp_path) -> None:
    for target_id in range(100, 140):
        fake_vast.set("endpoint", target_id, workers(worker(target_id)))
    config = fast_config(fake_vast.url, endpoints=[{"id": i} for i in range(100, 140)])
    shares = []
    for index in (0, 1):
        exporter = await run_exporter(config, "--shard.index", str(index), "--shard.count", "2")
        owned = {f"endpoint/{i}" for i in range(100, 140) if Shard(index, 2).owns("endpoint", i)}
        # Until the first round is done; then no other target may ever be polled.
        samples = await exporter.wait_for_metrics(lambda s, owned=owned: polled(s) == owned)
        shares.append(polled(samples))
        assert set(worker_labels(samples)) == {share.split("/")[1] for share in shares[-1]}
        assert await exporter.stop() == 0
    assert shares[0] & shares[1] == set()
    assert shares[0] | shares[1] == {f"endpoint/{i}" for i in range(100, 140)}
    assert min(len(shares[0]), len(shares[1])) >= 10  # a real split, not all on one side


@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_cover_every_target_exactly_once(count: int) -> None:
    targets = [("endpoint", i) for i in range(500)] + [("worker_group", i) for i in range(500)]
    owners = [[s for s in range(count) if Shard(s, count).owns(k, i)] for k, i in targets]
    assert all(len(found) == 1 for found in owners)


# Bad --shard.* flags exit 2: test_exporter.test_bad_flag_exits_2 (one child process test).


def test_discovery_config() -> None:
    config = parse_config({"discovery": {"enabled": True}})  # no explicit target needed
    assert config.discovery == DiscoverySettings(True, 300.0, None, None)
    for bad, key in [
        ({"interval": "500ms"}, "discovery.interval"),
        ({"include": "(["}, "discovery.include"),
        ({"exclude": 5}, "discovery.exclude"),
        ({"enabled": "yes"}, "discovery.enabled"),
        ({"intervall": "5m"}, "discovery.intervall"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config({"discovery": {"enabled": True, **bad}})
        assert caught.value.key == key


def test_merge_keeps_configured_names_and_fills_group_endpoints() -> None:
    found = discovered_targets(
        Account(
            (EndpointInfo(1, "listed", "active", {}), EndpointInfo(2, "solo", "active", {})),
            (GroupInfo(10, 1, "listed"),),
        ),
        DiscoverySettings(enabled=True),
    )
    assert found == [
        Target("worker_group", 10, "", 1, "listed"),
        Target("endpoint", 2, "solo", 2, "solo"),
    ]
    merged = merge_targets(
        [Target("endpoint", 1, "configured", 1, "configured"), Target("worker_group", 10)], found
    )
    assert merged == [
        Target("worker_group", 10, "", 1, "configured"),  # learnt its endpoint, named as configured
        Target("endpoint", 2, "solo", 2, "solo"),
        Target("endpoint", 1, "configured", 1, "configured"),
    ]


@pytest.mark.virtual_time
async def test_unnamed_configured_endpoint_takes_the_listed_name(fake_vast, run_exporter) -> None:
    account(fake_vast)
    config = discovery_config(fake_vast, include="^prod-b$")
    config["endpoints"] = [{"id": 2}]
    exporter = await run_exporter(config)
    samples = await exporter.wait_for_metrics(lambda s: "2001" in worker_labels(s))
    assert worker_labels(samples)["2001"]["endpoint_name"] == "prod-b"
    assert series(samples, "vastai_target_up", kind="endpoint", id="2", name="prod-b")


@pytest.mark.virtual_time
async def test_start_up_and_first_round_lines_count_every_target(fake_vast, run_exporter) -> None:
    account(fake_vast)
    fake_vast.set_instances([])
    fake_vast.set("endpoint", 3, workers(worker(3001)))
    config = discovery_config(fake_vast, include="^prod-", exclude="-test$")
    config["instances"] = {"enabled": True, "interval": "1h"}
    config["endpoints"] = [{"id": 3}]
    exporter = await run_exporter(config)
    started = await exporter.wait_for_log("vastai-exporter started")
    # endpoint 3, the listing and the instance list; discovery adds groups 11, 12 and endpoint 2
    assert " targets=3 " in started and " account_reads=2 " in started
    first = await exporter.wait_for_log("first poll round done")
    assert " targets=6 " in first and " targets_up=6 " in first and " workers=4" in first
    await exporter.wait_for_metrics(lambda s: len(series(s, "vastai_target_up")) == 6)
    _, page, _ = await exporter.get("/")
    assert page.count("<tr><td>") + page.count('<tr class="down"><td>') == 6
    assert "<th>discovery</th><td>on, listing read every 1s, include ^prod-, exclude -test$" in page
    assert "<th>instances</th><td>on, every 3600s, pages 1s apart</td>" in page


@pytest.mark.virtual_time
async def test_a_reload_toggling_discovery_does_not_read_the_listing_early(
    fake_vast, run_exporter, tmp_path
) -> None:
    account(fake_vast)
    config = discovery_config(fake_vast, interval="1h")
    config["endpoints"] = [{"id": 2}]  # so the config is valid with discovery off too
    exporter = await run_exporter(config, "--web.enable-lifecycle")
    await exporter.wait_for_metrics(lambda s: len(polled(s)) == 5)
    off = {**config, "discovery": {"enabled": False}}
    async with aiohttp.ClientSession() as session:
        for document in (off, config, off, config):
            (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
            async with session.post(exporter.base_url + "/-/reload") as response:
                assert response.status == 200
    await asyncio.sleep(0.5)
    assert len([r for r in fake_vast.requests if r.path == ENDPTJOBS_PATH]) == 1
    samples = await exporter.wait_for_metrics(lambda s: True)
    assert value(samples, "vastai_target_up", kind="listing") == 1.0


@pytest.mark.virtual_time
async def test_a_malformed_listing_is_not_quoted_in_the_log(fake_vast, run_exporter) -> None:
    account(fake_vast)
    broken = b'{"success": true, "results": [{"id": 1, "api_key": "' + LISTING_SECRET.encode()
    fake_vast.listings[ENDPTJOBS_PATH] = failure(200, broken + b'"} \xff')
    exporter = await run_exporter(discovery_config(fake_vast))
    await exporter.wait_for_log("target down.*kind=listing.*reason=invalid_response")
    assert await exporter.stop() == 0
    assert LISTING_SECRET not in exporter.log


@pytest.mark.virtual_time
async def test_odd_names_from_the_listing_still_render(fake_vast, run_exporter) -> None:
    fake_vast.set_account(
        [endpoint(1, 'bad\udc80 "name"\n')], [worker_group(11, 1, 'bad\udc80 "name"\n')]
    )
    fake_vast.set("worker_group", 11, workers(worker(1101, status="RUNNING\udc80")))
    exporter = await run_exporter(discovery_config(fake_vast))
    samples = await exporter.wait_for_metrics(lambda s: "1101" in worker_labels(s))
    assert worker_labels(samples)["1101"]["endpoint_name"] == 'bad? "name"'
    assert value(samples, "vastai_endpoint_info", endpoint_id="1") == 1.0


@pytest.mark.virtual_time
async def test_two_shards_split_endpoint_settings(fake_vast, run_exporter) -> None:
    fake_vast.set_account(
        [endpoint(i, f"e{i}") for i in range(1, 21)],
        [worker_group(100 + i, i, f"e{i}") for i in range(1, 21)],
    )
    for i in range(1, 21):
        fake_vast.set("worker_group", 100 + i, workers(worker(1000 + i)))
    shares = []
    for index in (0, 1):
        exporter = await run_exporter(
            discovery_config(fake_vast), "--shard.index", str(index), "--shard.count", "2"
        )
        samples = await exporter.wait_for_metrics(
            lambda s: value(s, "vastai_target_up", kind="listing") == 1.0 and bool(polled(s))
        )
        endpoints = {dict(k)["endpoint_id"] for k in series(samples, "vastai_endpoint_info")}
        groups = {dict(k)["worker_group_id"] for k in series(samples, "vastai_worker_group_info")}
        shares.append((endpoints, groups, set(worker_labels(samples))))
        assert await exporter.stop() == 0
    (e0, g0, w0), (e1, g1, w1) = shares
    assert e0 & e1 == set() and e0 | e1 == {str(i) for i in range(1, 21)}
    assert g0 & g1 == set() and g0 | g1 == {str(100 + i) for i in range(1, 21)}
    assert w0 & w1 == set() and len(w0 | w1) == 20
    assert min(len(e0), len(e1), len(g0), len(g1)) >= 3
