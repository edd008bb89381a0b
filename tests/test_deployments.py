"""Deployments (issue 24): versions, health, expiry and rollout per deployment, against the
fake API over HTTP on loopback, with the exporter in-process on virtual time."""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
from collections import Counter
from types import SimpleNamespace

import aiohttp
import pytest

from exporter import sim
from exporter.config import ConfigError, parse_config
from exporter.parsing import PollError
from exporter.reads.deployments import (
    VERSIONS_EVERY,
    DeploymentsRead,
    DeploymentsSettings,
    parse_deployments,
    parse_versions,
    rollout,
)
from exporter.targets import Kind, Shard, Target

from .conftest import promtool
from .fakevast import (
    DEPLOYMENT_ENV,
    DEPLOYMENT_S3_KEY,
    DEPLOYMENT_SEARCH,
    DEPLOYMENT_VERSIONS_PATH,
    DEPLOYMENTS_PATH,
    FakeVast,
    deployment,
    failure,
    version,
    worker,
    workers,
)
from .harness import API_KEY, Samples, fast_config, series

pytestmark = pytest.mark.virtual_time

GIB = 2**30
SECRETS = (DEPLOYMENT_ENV, "hf_deploymentSecretToken0042", DEPLOYMENT_S3_KEY, "s3-object-key")
SECRETS += (DEPLOYMENT_SEARCH, "secret_search_marker", API_KEY)


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    found = list(series(samples, metric, **labels).values())
    assert len(found) <= 1, f"{metric} {labels} matches {len(found)} series"
    return found[0] if found else None


def config(fake: FakeVast, polling: str = "300ms") -> dict:
    """Deployments read every 30 s; `polling`: the worker lists' interval (long where a test
    spans many rounds: each poll and render costs real time, even on virtual time)."""
    result = fast_config(
        fake.url,
        endpoints=[{"id": 10, "name": "chat"}],
        worker_groups=[{"id": 20, "endpoint_id": 10}],
        deployments={"enabled": True, "interval": "30s"},
        polling={"interval": polling},
    )
    result["vast"]["console_url"] = fake.url
    return result


def versions_path(deployment_id: int) -> str:
    return DEPLOYMENT_VERSIONS_PATH.format(id=deployment_id)


def two_deployments(fake: FakeVast) -> None:
    """644 on endpoint 10 mid-rollout, unhealthy, with a ttl; 645 without endpoint, versions,
    ttl or heartbeat."""
    fake.deployment_records = [
        deployment(
            644,
            10,
            current_version_id=31,
            last_healthy_version_id=30,
            ttl=600,
            last_client_heartbeat=1764600000.5,
            storage=16.0,
        ),
        deployment(
            645,
            None,
            name="batch",
            tag="v2",
            image="vastai/pytorch:latest",
            current_version_id=None,
            last_healthy_version_id=None,
            storage="32",
            updated_at=None,
        ),
    ]
    fake.version_records = {
        644: [version(31, "v2.0"), version(30, "v1.9"), version(29, None, file_size=None)],
        645: [],
    }


async def test_each_deployment_its_versions_health_expiry_and_rollout(
    fake_vast: FakeVast, run_exporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    two_deployments(fake_vast)
    # 646: on endpoint 99, which nothing polls: no workers counted, none claimed.
    fake_vast.deployment_records.append(deployment(646, 99, name="other"))
    # Endpoint 10: one worker on the current version, two on the previous one (one of them
    # sending it as a string), one without deployment_version_id; group 20 shows one of them
    # again (counted once: from the endpoint's own target).
    fake_vast.set(
        "endpoint",
        10,
        workers(
            worker(1, deployment_version_id=31),
            worker(2, deployment_version_id=30),
            worker(3, deployment_version_id="30"),
            worker(4),
        ),
    )
    fake_vast.set("worker_group", 20, workers(worker(1, deployment_version_id=31)))
    exporter = await run_exporter(config(fake_vast), "--log.level", "debug")
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_deployment_workers") != {}, timeout=30
    )
    chat = {"deployment_id": "644", "deployment_name": "square", "tag": "default"}
    chat |= {"endpoint_id": "10", "endpoint_name": "chat"}
    batch = {"deployment_id": "645", "deployment_name": "batch", "tag": "v2"}
    batch |= {"endpoint_id": "", "endpoint_name": ""}
    image = "vastai/base-image:latest"
    assert value(samples, "vastai_deployment_info", image=image, **chat) == 1
    assert value(samples, "vastai_deployment_info", image="vastai/pytorch:latest", **batch) == 1
    expected_chat = {
        "current_version_id": 31,
        "last_healthy_version_id": 30,
        "healthy": 0,
        "versions": 3,
        "storage_bytes": 16 * GIB,
        "ttl_seconds": 600,
        "last_heartbeat_timestamp_seconds": 1764600000.5,
        "expiry_timestamp_seconds": 1764600600.5,
        "created_timestamp_seconds": 1764000000.5,
        "updated_timestamp_seconds": 1764500000.25,
    }
    for name, expected in expected_chat.items():
        assert value(samples, f"vastai_deployment_{name}", **chat) == expected, name
    labels = {"version_id": "31", "version_label": "v2.0"}
    assert value(samples, "vastai_deployment_version_info", **labels, **chat) == 1
    assert value(samples, "vastai_deployment_workers", version="current", **chat) == 1
    assert value(samples, "vastai_deployment_workers", version="other", **chat) == 2
    # null ids, ttl, heartbeat and updated_at: absent, never an error; a numeric string storage.
    expected_batch = {
        "current_version_id": None,
        "last_healthy_version_id": None,
        "healthy": None,
        "ttl_seconds": None,
        "expiry_timestamp_seconds": None,
        "last_heartbeat_timestamp_seconds": None,
        "updated_timestamp_seconds": None,
        "versions": 0,
        "storage_bytes": 32 * GIB,
    }
    for name, expected in expected_batch.items():
        assert value(samples, f"vastai_deployment_{name}", **batch) == expected, name
    assert series(samples, "vastai_deployment_version_info", deployment_id="645") == {}
    assert series(samples, "vastai_deployment_workers", deployment_id="645") == {}
    assert series(samples, "vastai_deployment_workers", deployment_id="646") == {}
    assert value(samples, "vastai_deployment_info", deployment_id="646", endpoint_id="99") == 1
    assert value(samples, "vastai_target_up", kind="deployments") == 1
    # One call of each path, 3 s apart per path (the versions' ids share one path).
    calls = [(r.path, r.at) for r in fake_vast.requests if "/deployment" in r.path]
    assert [path for path, _ in calls] == [DEPLOYMENTS_PATH, *map(versions_path, (644, 645, 646))]
    assert calls[2][1] - calls[1][1] >= 3.0 and calls[3][1] - calls[2][1] >= 3.0
    # A scrape promtool accepts (run blocking: the loop's virtual clock must not run ahead).
    scrape = await exporter.scrape()
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    # env, s3_key and search_params: nowhere.
    page = (await exporter.get("/"))[1]
    for text in (scrape, page, caplog.text, exporter.log):
        for secret in SECRETS:
            assert secret not in text


async def test_versions_are_read_again_when_the_current_version_changes_or_every_tenth_round(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.deployment_records = [deployment(1, 10), deployment(2, 10, current_version_id=40)]
    fake_vast.version_records = {1: [version(31, "one")], 2: [version(40, "forty")]}
    fake_vast.set("endpoint", 10, workers(worker(1)))
    exporter = await run_exporter(config(fake_vast, polling="30s"))
    # Rounds start 30 to 31.5 s apart (up to 5% jitter): round 2 before 45 s, round 3 after.
    await asyncio.sleep(45)
    assert len(fake_vast.requests_for(DEPLOYMENTS_PATH)) == 2
    fake_vast.deployment_records[1]["current_version_id"] = 41
    fake_vast.version_records[2].insert(0, version(41, "forty-one"))
    await asyncio.sleep(31.5 * (VERSIONS_EVERY + 2) + 10 - 45)  # past round VERSIONS_EVERY + 3
    samples = await exporter.wait_for_metrics(lambda s: True)
    first = [r.at for r in fake_vast.requests_for(DEPLOYMENTS_PATH)]
    assert len(first) >= VERSIONS_EVERY + 3
    round_of = {at: index + 1 for index, at in enumerate(first)}

    def read_in(deployment_id: int) -> list[int]:
        times = [r.at for r in fake_vast.requests_for(versions_path(deployment_id))]
        return [max(n for at, n in round_of.items() if at <= t) for t in times]

    assert read_in(1)[:2] == [1, 1 + VERSIONS_EVERY]
    assert read_in(2)[:3] == [1, 3, 3 + VERSIONS_EVERY]
    assert value(samples, "vastai_deployment_version_info", version_label="forty-one") == 1
    assert value(samples, "vastai_deployment_versions", deployment_id="2") == 2
    # Rounds 30 s apart, never sooner (to the float rounding of when a request arrives).
    assert all(b - a > 29.99 for a, b in itertools.pairwise(first)), first


async def test_an_account_without_deployments_costs_one_call_a_round_and_exports_nothing(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1, deployment_version_id=3)))
    exporter = await run_exporter(config(fake_vast, polling="30s"))
    await asyncio.sleep(75)  # rounds at 0, 30 to 31.5 and 60 to 63 s
    text = await exporter.scrape()
    assert [r.path for r in fake_vast.requests if "/deployment" in r.path] == [DEPLOYMENTS_PATH] * 3
    assert "vastai_deployment_" not in text
    assert 'vastai_target_up{id="account",kind="deployments",name=""} 1.0' in text


async def test_a_401_fails_this_read_alone(fake_vast: FakeVast, run_exporter) -> None:
    two_deployments(fake_vast)
    fake_vast.set("endpoint", 10, workers(worker(1)))
    # show_deployments.yaml's 401: its Error schema.
    fake_vast.listings[DEPLOYMENTS_PATH] = failure(
        401, {"success": False, "error": "auth_error", "msg": "Invalid API key"}
    )
    exporter = await run_exporter(config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: (
            value(s, "vastai_target_poll_errors_total", kind="deployments", reason="auth") == 1
        ),
        timeout=10,
    )
    assert value(samples, "vastai_target_up", kind="deployments") == 0
    assert value(samples, "vastai_target_up", kind="endpoint", id="10") == 1
    assert value(samples, "vastai_target_workers", kind="endpoint", id="10") == 1
    assert not any(name.startswith("vastai_deployment_") for name, _ in samples)
    assert fake_vast.requests_for(versions_path(644)) == []


async def test_a_429_backs_off_and_versions_read_before_it_are_kept(
    fake_vast: FakeVast, run_exporter
) -> None:
    two_deployments(fake_vast)
    fake_vast.set("endpoint", 10, workers(worker(1)))
    # show_deployments.yaml's 429: JSON with `detail`, no Retry-After; the versions of 645
    # answer it once, after 644's were read.
    too_fast = failure(429, {"detail": "API requests too frequent endpoint threshold=3.0"})
    answers = iter([too_fast])
    fake_vast.listings[versions_path(645)] = lambda: next(answers, None)
    exporter = await run_exporter(config(fake_vast, polling="30s"))
    await asyncio.sleep(75)  # the 429 in the first round, then one interval doubled
    samples = await exporter.wait_for_metrics(lambda s: True)
    limited = value(
        samples, "vastai_target_poll_errors_total", kind="deployments", reason="rate_limited"
    )
    assert limited == 1
    calls = [(r.path, r.at) for r in fake_vast.requests if "/deployment" in r.path]
    paths = [path for path, _ in calls]
    assert paths == [
        DEPLOYMENTS_PATH,
        versions_path(644),
        versions_path(645),  # 429: the read fails
        DEPLOYMENTS_PATH,
        versions_path(645),  # 644's were kept
    ]
    # The read backed off: the second round started two intervals after the first.
    assert calls[3][1] - calls[0][1] == pytest.approx(60.0)
    assert value(samples, "vastai_deployment_versions", deployment_id="644") == 3


async def test_a_deployment_gone_between_the_list_and_its_versions_is_no_error(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.deployment_records = [deployment(7, 10)]  # no versions: 404 as for an unknown id
    fake_vast.set("endpoint", 10, workers(worker(1, deployment_version_id=31)))
    exporter = await run_exporter(config(fake_vast))
    samples = await exporter.wait_for_metrics(
        lambda s: series(s, "vastai_deployment_info") != {}, timeout=30
    )
    assert value(samples, "vastai_target_up", kind="deployments") == 1
    assert series(samples, "vastai_deployment_versions") == {}
    labels = {"version_id": "31", "version_label": ""}
    assert value(samples, "vastai_deployment_version_info", **labels) == 1
    assert value(samples, "vastai_deployment_workers", version="current") == 1


def test_deployments_config() -> None:
    base = {"endpoints": [{"id": 1}]}
    assert parse_config(base).deployments == DeploymentsSettings(False, 60.0)
    on = parse_config({**base, "deployments": {"enabled": True, "interval": "30s"}})
    assert on.deployments == DeploymentsSettings(True, 30.0)
    for bad in ({"interval": "29s"}, {"enabled": "yes"}, {"every": "1m"}):
        with pytest.raises(ConfigError) as caught:
            parse_config({**base, "deployments": bad})
        assert str(caught.value.key).startswith("deployments.")


def test_parsing_keeps_no_secret_and_treats_odd_fields_as_absent() -> None:
    payload = {
        "success": True,
        "deployments": [
            deployment(5, "12", current_version_id="8", last_healthy_version_id=7.0, ttl="x"),
            deployment(None, 1),  # no id: skipped
            deployment(
                6, True, current_version_id=-1, storage=None, created_at="2026-11-01T00:00:00Z"
            ),
        ],
    }
    five, six = parse_deployments(payload)
    assert (five.id, five.endpoint_id, five.current, five.last_healthy) == (5, 12, "8", "7")
    assert "ttl_seconds" not in five.values and five.values["storage_bytes"] == 16 * GIB
    assert (six.endpoint_id, six.current, "storage_bytes" in six.values) == (None, None, False)
    assert six.values["created_timestamp_seconds"] == 1793491200.0
    for secret in SECRETS:
        assert secret not in repr((five, six))
    with pytest.raises(PollError) as caught:
        parse_deployments({"success": False, "error": "auth_error", "msg": "no"})
    assert caught.value.reason == "api_error"
    with pytest.raises(PollError):
        parse_deployments({"success": True})


def test_versions_parsing() -> None:
    found = parse_versions({"success": True, "versions": [version(3, "a"), {"id": "x"}, 5]})
    assert [(v.id, v.label) for v in found or ()] == [("3", "a")]
    assert parse_versions({"success": True}) is None  # none listed: unknown
    assert parse_versions({"success": True, "versions": [{"id": 4}]})[0].label == ""
    with pytest.raises(PollError) as caught:
        parse_versions({"success": False, "msg": "Deployment not found"})
    assert caught.value.reason == "api_error"


def test_rollout_counts_workers_with_a_version_only() -> None:
    assert rollout(Counter({"8": 2, "7": 3, None: 4}), "8") == (2, 3)
    assert rollout(Counter({"7": 3, None: 1}), None) == (0, 3)
    assert rollout(Counter(), "8") == (0, 0)


def _read_in_shard(index: int, counts: dict[int, Counter]) -> DeploymentsRead:
    context = SimpleNamespace(
        shard=Shard(index, 2),
        targets=[Target(Kind.WORKER_GROUP, 20, "", 10, "chat")],
        endpoint_names={10: "chat"},
        worker_versions=lambda: counts,
    )
    read = DeploymentsRead(context)  # type: ignore[arg-type]
    read.apply(parse_deployments({"deployments": [deployment(644, 10, current_version_id=31)]}))
    return read


def test_with_shards_the_endpoints_owner_exports_the_deployment_and_each_replica_its_workers():
    owner = next(i for i in (0, 1) if Shard(i, 2).owns(Kind.ENDPOINT, 10))
    polling = 1 - owner  # polls the endpoint's worker group
    owner_view = _read_in_shard(owner, {}).view(True)
    other_view = _read_in_shard(polling, {10: Counter({"31": 2, "30": 1})}).view(True)
    assert owner_view is not None and other_view is not None
    [mine], [theirs] = owner_view.rows, other_view.rows
    assert (mine.owned, mine.workers) == (True, (0, 0))
    assert (theirs.owned, theirs.workers) == (False, (2, 1))
    names = {family.name for family in other_view.families() if family.samples}
    assert names == {"vastai_deployment_workers"}
    assert _read_in_shard(polling, {}).view(True) is None  # nothing of it here
    assert _read_in_shard(owner, {}).view(False) is None  # stale


# show_deployments.yaml: the properties of a deployment record.
PUBLISHED = {
    "id", "name", "tag", "image", "endpoint_id", "env", "file_hash", "s3_key", "search_params",
    "current_version_id", "last_healthy_version_id", "storage", "ttl", "last_client_heartbeat",
    "created_at", "updated_at",
}  # fmt: skip
VERSION_FIELDS = {"id", "file_hash", "version_label", "file_size", "created_at", "last_used_at"}


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, object]:
    async with session.get(url, headers={"Authorization": "Bearer any"}) as response:
        return response.status, await response.json()


async def test_the_simulator_answers_the_deployment_calls_as_vast_documents_them() -> None:
    now = [1_800_000_000.0]
    runner, url = await sim.start_simulator(sim=sim.Simulation(clock=lambda: now[0]))
    try:
        async with aiohttp.ClientSession() as session:
            status, listed = await _get(session, url + DEPLOYMENTS_PATH)
            assert status == 200 and listed["success"] is True
            assert [d["id"] for d in listed["deployments"]] == [201, 202]
            assert all(set(d) == PUBLISHED for d in listed["deployments"])
            await asyncio.sleep(3)  # each route allows one call per 3 s and key
            # vastai 1.9.1 asks for the list without the trailing slash
            assert await _get(session, url + "/api/v0/deployments") == (200, listed)
            status, one = await _get(session, url + "/api/v0/deployment/201/")
            assert status == 200 and set(one["deployment"]) == PUBLISHED | {
                "endpoint_state",
                "worker_count",
            }
            assert one["deployment"]["endpoint_state"] == "active"
            status, versions = await _get(session, url + versions_path(201))
            assert status == 200 and versions["success"] is True
            assert [v["id"] for v in versions["versions"]] == [8, 7, 5]  # newest first
            assert all(set(v) == VERSION_FIELDS for v in versions["versions"])
            await asyncio.sleep(3)
            status, missing = await _get(session, url + versions_path(999))
            assert status == 404 and missing["success"] is False
            status, missing = await _get(session, url + "/api/v0/deployment/999/")
            assert status == 404 and missing["success"] is False
    finally:
        await runner.cleanup()


def test_the_demo_shows_a_stalled_rollout_and_an_expiry() -> None:
    now = [1_800_000_000.0]
    simulation = sim.Simulation(clock=lambda: now[0])

    def state() -> tuple[dict, dict, Counter]:
        rolling, expiring = simulation.deployments()
        running = Counter(w["deployment_version_id"] for w in simulation.endpoint_workers(101))
        return rolling, expiring, running

    for elapsed in (0, 120, 600, 1800):
        now[0] = 1_800_000_000.0 + elapsed
        rolling, expiring, running = state()
        # llama-70b: version 8 current, 7 the last healthy one; workers on both, always.
        assert (rolling["current_version_id"], rolling["last_healthy_version_id"]) == (8, 7)
        assert running[8] >= 1 and running[7] >= 1 and set(running) <= {7, 8}, elapsed
    # sdxl-turbo: ttl 900 s, last heartbeat 240 s before the start; its expiry comes within
    # 10 minutes after a minute, and the client is back 540 s in, 120 s before the teardown.
    left = {}
    for elapsed in (0, 60, 120, 539, 540, 600):
        now[0] = 1_800_000_000.0 + elapsed
        _, expiring, _ = state()
        left[elapsed] = expiring["last_client_heartbeat"] + expiring["ttl"] - now[0]
    assert left == {0: 660.0, 60: 600.0, 120: 540.0, 539: 121.0, 540: 900.0, 600: 900.0}
