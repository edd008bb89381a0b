"""Tests for the simulated Vast.ai API, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from exporter.fields import ENDPOINT_FIELDS, GROUP_FIELDS, INSTANCE_FIELDS, WORKER_FIELDS
from exporter.sim import (
    FLAKY_GROUP_ID,
    FRESH_ENDPOINT_ID,
    FRESH_SECONDS,
    OBJECT_SHAPE_GROUP_ID,
    DemoTarget,
    Simulation,
    demo_targets,
    run_simulator,
    start_simulator,
)
from exporter.sim.model import QUERY_STRING_GROUP_ID

from .published import (
    CLI_ENDPOINT,
    CLI_INSTANCE,
    CLI_USER,
    CLI_WORKER,
    SHOW_AUTOGROUP,
    SHOW_ENDPOINTS,
    SHOW_INSTANCE,
    SHOW_INSTANCES,
    SHOW_USER,
    mismatches,
)

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LOADING = {"loading", "model_loading"}
SERVING = {"ready", "running"}


class ManualClock:
    """A clock the tests move by hand, so simulated minutes pass in milliseconds."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    session: aiohttp.ClientSession
    base: str
    clock: ManualClock
    sim: Simulation

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = AUTH if headers is None else headers
        return await self.session.post(self.base + path, data=data, headers=hdrs)

    async def workers(self, path: str, ident: int) -> Any:
        async with await self.post(path, {"id": ident}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def get(self, path: str) -> Any:
        async with self.session.get(self.base + path, headers=AUTH) as resp:
            assert resp.status == 200
            return await resp.json()


async def _api(api_key: str | None, flaky: bool) -> AsyncIterator[Api]:
    clock = ManualClock()
    sim = Simulation(seed=7, clock=clock, flaky=flaky)
    runner, base = await start_simulator("127.0.0.1", 0, sim=sim, api_key=api_key)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, base, clock, sim)
    finally:
        await runner.cleanup()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """A simulator that only accepts KEY and has no flaky group."""
    async for value in _api(KEY, flaky=False):
        yield value


@pytest.fixture
async def flaky_api() -> AsyncIterator[Api]:
    """A simulator that accepts any key and has the flaky group enabled."""
    async for value in _api(None, flaky=True):
        yield value


def _status(worker: dict[str, Any]) -> str:
    return str(worker["status"]).lower()


def _num(value: Any) -> float | None:
    """The value as a float if it is numeric (or a numeric string), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


async def test_base_url_has_real_port(api: Api) -> None:
    assert api.base.startswith("http://127.0.0.1:")
    assert int(api.base.rsplit(":", 1)[1]) > 0


async def test_auth_required(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer nope"}):
        async with await api.post("/get_endpoint_workers/", {"id": 101}, headers) as resp:
            assert resp.status == 401
            assert resp.content_type == "text/plain"
    async with await api.post("/get_endpoint_workers/", {"id": 101, "api_key": KEY}, {}) as resp:
        assert resp.status == 200
    async with api.session.get(api.base + "/api/v0/endptjobs/") as resp:
        assert resp.status == 401


async def test_any_key_accepted_without_api_key(flaky_api: Api) -> None:
    headers = {"Authorization": "Bearer whatever"}
    async with await flaky_api.post("/get_endpoint_workers/", {"id": 102}, headers) as resp:
        assert resp.status == 200


def _listed(body: Any) -> list[dict[str, Any]]:
    """The workers of either shape: a bare list, or the documented {"workers": [...]}."""
    return body["workers"] if isinstance(body, dict) else body


async def test_response_shapes(api: Api) -> None:
    endpoint = await api.workers("/get_endpoint_workers/", 101)
    assert isinstance(endpoint, list) and endpoint
    for path in ("/get_autogroup_workers/", "/get_workergroup_workers/"):
        group = await api.workers(path, OBJECT_SHAPE_GROUP_ID)
        assert isinstance(group, dict) and isinstance(group["workers"], list)
        assert group["workers"]
        for worker in group["workers"]:  # the documented shape's fields
            assert worker["created_at"].endswith("Z") and worker["url"].startswith("http://")
        assert isinstance(await api.workers(path, 1003), list)
    seed_fields = {"cur_load", "cur_load_rolling_avg", "disk_usage", "dlperf", "id"}
    seed_fields |= {"reliability", "reqs_working", "status"}
    for worker in endpoint:
        assert seed_fields <= worker.keys()
        assert isinstance(worker["id"], int) and 1_000_000 <= worker["id"] < 100_000_000
        assert isinstance(worker["warnings"], list)


async def test_unknown_id_is_a_bare_json_string_with_200(api: Api) -> None:
    """As Vast's OpenAPI documents the "Error Response" of both worker-list calls."""
    for path in ("/get_endpoint_workers/", "/get_autogroup_workers/"):
        async with await api.post(path, {"id": 999}) as resp:
            assert resp.status == 200
            text = await resp.json()
            assert isinstance(text, str)
            assert "invalid api_key" in text and "999 not found" in text


async def test_bad_body_is_error_msg_400(api: Api) -> None:
    bodies: list[Any] = [b"{not json", [1, 2], {}, {"id": "101"}, {"id": True}, {"id": 1.5}]
    for body in bodies:
        async with await api.post("/get_endpoint_workers/", body) as resp:
            assert resp.status == 400
            assert "error_msg" in await resp.json()


async def test_write_paths_absent(api: Api) -> None:
    for path in ("/route/", "/update_workers/"):
        async with await api.post(path, {"id": 101}) as resp:
            assert resp.status == 404


async def test_ten_minutes_of_movement(api: Api) -> None:
    seen: set[str] = set()
    first_ids: set[int] | None = None
    all_ids: set[int] = set()
    for tick in range(300):
        api.clock.advance(2.0)
        workers = []
        for endpoint_id in (101, 102, 103):
            workers += await api.workers("/get_endpoint_workers/", endpoint_id)
        assert len(workers) >= 10
        statuses = {_status(w) for w in workers}
        assert statuses & SERVING
        seen |= statuses
        ids = {w["id"] for w in workers}
        first_ids = ids if first_ids is None else first_ids
        all_ids |= ids
        if tick % 30 == 0:
            await _check_groups_serving(api)
    assert seen >= {"creating", "error", "rebooting", "stopped"}
    assert seen & SERVING and seen & LOADING
    assert all_ids - first_ids, "no worker joined"
    assert first_ids - ids, "no worker left"


async def _check_groups_serving(api: Api) -> None:
    endpoints = (await api.get("/api/v0/endptjobs/"))["results"]
    groups = (await api.get("/api/v0/workergroups/"))["results"]
    assert len(endpoints) >= 2 and len(groups) >= 3
    for group in groups:
        if group["endpoint_id"] == FRESH_ENDPOINT_ID:
            continue  # its workers come and go through cold starts
        workers = _listed(await api.workers("/get_autogroup_workers/", group["id"]))
        assert any(_status(w) in SERVING for w in workers)


def _perf_consistent(worker: dict[str, Any]) -> bool | None:
    """Whether perf == measured_perf * reliability; None when one of them is not numeric."""
    perf, measured, rel = (_num(worker.get(k)) for k in ("perf", "measured_perf", "reliability"))
    if perf is None or measured is None or rel is None:
        return None
    return 0 < rel <= 1 and perf == pytest.approx(measured * rel)


async def test_perf_is_measured_perf_times_reliability(api: Api) -> None:
    checked = 0
    for _ in range(20):
        api.clock.advance(7.0)
        for endpoint_id in (101, 102, 103):
            for worker in await api.workers("/get_endpoint_workers/", endpoint_id):
                verdict = _perf_consistent(worker)
                assert verdict is not False, worker
                checked += verdict is True
    assert checked > 100


async def test_loading_workers_carry_no_load(api: Api) -> None:
    for _ in range(30):
        api.clock.advance(3.0)
        for w in await api.workers("/get_endpoint_workers/", 101):
            if _status(w) in LOADING | {"creating", "starting"}:
                assert _num(w["cur_load"]) == 0
            if _status(w) == "creating":
                assert w.get("loaded_at", 0) == 0


async def test_flaky_group_fails_sometimes(flaky_api: Api) -> None:
    outcomes: list[str] = []
    for _ in range(60):
        flaky_api.clock.advance(1.0)
        async with await flaky_api.post("/get_autogroup_workers/", {"id": FLAKY_GROUP_ID}) as resp:
            outcomes.append(await _classify(resp))
    assert outcomes.count("ok") >= 30
    assert {"500", "429", "502"} <= set(outcomes)
    for group_id in (1001, 1002, 1003):
        for _ in range(20):
            workers = await flaky_api.workers("/get_autogroup_workers/", group_id)
            assert isinstance(_listed(workers), list)
    for _ in range(20):
        await flaky_api.workers("/get_endpoint_workers/", 103)


async def _classify(resp: aiohttp.ClientResponse) -> str:
    if resp.status == 429:
        assert "Retry-After" not in resp.headers
        assert "too frequent" in await resp.text()
        return "429"
    if resp.status in (500, 502):
        return str(resp.status)
    assert resp.status == 200
    assert isinstance(_listed(await resp.json()), list)
    return "ok"


async def test_listings_and_instances(api: Api) -> None:
    endpoints = (await api.get("/api/v0/endptjobs/"))["results"]
    for endpoint in endpoints:
        assert endpoint["endpoint_state"] == "active"
        assert {"id", "endpoint_name", "target_util", "max_workers", "api_key"} <= endpoint.keys()
    for path in ("/api/v0/workergroups/", "/api/v0/autojobs/"):
        body = await api.get(path)
        assert body["success"] is True
        assert {"id", "endpoint_id", "endpoint_name", "gpu_ram"} <= body["results"][0].keys()
    api.clock.advance(FRESH_SECONDS)  # the fresh endpoint lists its workers too
    instances = await all_instances(api)
    workers = []
    for endpoint in endpoints:
        workers += await api.workers("/get_endpoint_workers/", endpoint["id"])
    assert {i["id"] for i in instances} == {w["id"] for w in workers}
    for inst in instances:
        assert inst["gpu_name"] in {"RTX 4090", "A100 SXM4", "H100 SXM", "RTX 3090"}
        assert 0.1 < inst["dph_total"] / inst["num_gpus"] < 3.5
        assert 0 <= inst["gpu_util"] <= 100 and 20 < inst["gpu_temp"] < 100
        assert inst["storage_total_cost"] < inst["dph_total"]
        assert inst["jupyter_token"] and inst["public_ipaddr"]  # secrets a real record has
    serving = [i for i in instances if i["actual_status"] == "running" and i["vmem_usage"] > 1]
    assert serving and max(i["gpu_util"] for i in serving) > 20  # GPUs work with the load


async def all_instances(api: Api) -> list[dict[str, Any]]:
    """Every page of /api/v1/instances/, one request a second as Vast allows."""
    found, token = [], None
    while True:
        query = "" if token is None else f"?after_token={token}"
        async with api.session.get(api.base + "/api/v1/instances/" + query, headers=AUTH) as resp:
            if resp.status == 429:
                assert "Retry-After" not in resp.headers and "too frequent" in await resp.text()
                await asyncio.sleep(1.0)
                continue
            assert resp.status == 200
            body = await resp.json()
        assert body["success"] is True and len(body["instances"]) <= 25
        found += body["instances"]
        token = body["next_token"]
        if token is None:
            return found


async def test_instance_list_v1_limits_and_v0_is_gone(api: Api) -> None:
    async with api.session.get(api.base + "/api/v0/instances/?owner=me", headers=AUTH) as resp:
        assert resp.status == 410 and (await resp.json())["error"] == "deprecated_endpoint"
    async with api.session.get(api.base + "/api/v1/instances/?limit=5", headers=AUTH) as resp:
        assert resp.status == 200 and len((await resp.json())["instances"]) == 5
    async with api.session.get(api.base + "/api/v1/instances/", headers=AUTH) as resp:
        assert resp.status == 429  # within a second of the previous call
    await asyncio.sleep(1.0)
    bad = "/api/v1/instances/?after_token=nonsense"
    async with api.session.get(api.base + bad, headers=AUTH) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_token"


async def test_demo_targets_cover_everything(api: Api) -> None:
    endpoints = (await api.get("/api/v0/endptjobs/"))["results"]
    groups = (await api.get("/api/v0/workergroups/"))["results"]
    targets = demo_targets()
    expected = {DemoTarget("endpoint", e["id"], e["endpoint_name"], None) for e in endpoints}
    expected |= {DemoTarget("worker_group", g["id"], "", g["endpoint_id"]) for g in groups}
    assert set(targets) == expected


def test_deterministic_and_fresh_copies() -> None:
    clock = ManualClock()
    first, second = Simulation(seed=3, clock=clock), Simulation(seed=3, clock=clock)
    clock.advance(5.0)
    assert first.endpoint_workers(101) == second.endpoint_workers(101)
    clock.advance(90.0)
    assert first.group_workers(1003) == second.group_workers(1003)
    copy = first.group_workers(1003)
    assert copy is not None
    copy[0]["status"] = "mutated"
    copy[0]["warnings"].append("mutated")
    again = first.group_workers(1003)
    assert again is not None and again[0]["status"] != "mutated"
    assert "mutated" not in again[0]["warnings"]
    assert first.endpoint_workers(999) is None and first.group_workers(999) is None


def test_run_simulator_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_simulator(["--bogus"]) == 2
    assert run_simulator(["--listen", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 2


async def test_workers_carry_every_field_of_the_table(api: Api) -> None:
    """The simulator follows exporter/fields.py: every declared field is sent by some worker."""
    api.clock.advance(60.0)
    sent: set[str] = set()
    for group_id in (1001, 1002, 1003, 1004):
        for worker in _listed(await api.workers("/get_autogroup_workers/", group_id)):
            sent |= {key for key, value in worker.items() if value is not None}
    assert {field.api for field in WORKER_FIELDS} - sent == set()
    assert "deployment_version_id" in sent


async def test_listings_carry_every_field_of_the_tables(api: Api) -> None:
    """The listings and the instance list follow exporter/fields.py: every declared endpoint,
    worker-group and instance field is a number in every record."""
    api.clock.advance(FRESH_SECONDS)
    for records, fields in (
        ((await api.get("/api/v0/endptjobs/"))["results"], ENDPOINT_FIELDS),
        ((await api.get("/api/v0/workergroups/"))["results"], GROUP_FIELDS),
        (await all_instances(api), INSTANCE_FIELDS),
    ):
        assert records
        for record in records:
            assert {f.api for f in fields if _num(record.get(f.api)) is None} == set(), record


async def test_records_carry_every_published_field(api: Api) -> None:
    """Each record has every field that Vast's OpenAPI and vast-cli 1.9.1 read, with its
    published type (tests/published.py); one instance is shown by its v0 path as listed, and
    the user under both spellings."""
    api.clock.advance(FRESH_SECONDS)  # every group has workers
    endpoints = (await api.get("/api/v0/endptjobs/"))["results"]
    instances = await all_instances(api)
    shown = [
        (await api.get(f"/api/v0/instances/{i['id']}/?owner=me"))["instances"] for i in instances
    ]
    users = [await api.get(path) for path in ("/api/v0/users/current/", "/api/v0/users/current")]
    workers = [w for e in endpoints for w in await api.workers("/get_endpoint_workers/", e["id"])]
    checks = (
        ("endpoint", endpoints, SHOW_ENDPOINTS | CLI_ENDPOINT),
        ("group", (await api.get("/api/v0/workergroups/"))["results"], SHOW_AUTOGROUP),
        ("instance", instances, SHOW_INSTANCES | CLI_INSTANCE),
        ("instance v0", shown, SHOW_INSTANCE | CLI_INSTANCE),
        ("user", users, SHOW_USER | CLI_USER),
        ("worker", workers, CLI_WORKER),
    )
    wrong = {
        f"{kind} {record['id']}": found
        for kind, records, fields in checks
        for record in records
        if (found := mismatches(record, fields))
    }
    assert wrong == {}
    assert shown == instances and users[0] == users[1]
    assert {e["created_at"].__class__ for e in endpoints} == {float, str}  # both forms


async def test_worker_groups_list_their_search_in_both_forms(api: Api) -> None:
    """search_query is the JSON object show_autogroup.yaml types it as, except in one group,
    which keeps the query string of the schema's example; both ask for the group's GPUs."""
    groups = (await api.get("/api/v0/workergroups/"))["results"]
    texts = {g["id"]: g["search_query"] for g in groups if isinstance(g["search_query"], str)}
    assert list(texts) == [QUERY_STRING_GROUP_ID]
    assert texts[QUERY_STRING_GROUP_ID].startswith("gpu_name in [RTX_4090,RTX_3090] num_gpus=1 ")
    for group in groups:
        if group["id"] != QUERY_STRING_GROUP_ID:
            query = group["search_query"]
            assert query["gpu_ram"] == {"gte": group["gpu_ram"] * 1000.0}
            assert query["rented"] == {"eq": False} and query["verified"] == {"eq": True}


async def test_one_instance_by_its_v0_path(api: Api) -> None:
    """GET /api/v0/instances/{id}/ still answers (show_instance.yaml) where the v0 list is gone:
    `{"instances": null}` for an id the account does not hold, 400 for one that is no id."""
    async with api.session.get(api.base + "/api/v0/instances/5/", headers=AUTH) as resp:
        assert resp.status == 200 and await resp.json() == {"instances": None}
    async with api.session.get(api.base + "/api/v0/instances/abc/", headers=AUTH) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_args"
    async with api.session.get(api.base + "/api/v0/instances/5/") as resp:
        assert resp.status == 401


async def test_the_fresh_endpoint_is_not_ready_then_cold_starts(api: Api) -> None:
    group = next(
        g["id"]
        for g in (await api.get("/api/v0/workergroups/"))["results"]
        if g["endpoint_id"] == FRESH_ENDPOINT_ID
    )
    for path, ident in (
        ("/get_endpoint_workers/", FRESH_ENDPOINT_ID),
        ("/get_autogroup_workers/", group),
    ):
        body = await api.workers(path, ident)
        assert isinstance(body, dict) and body["error_msg"]
    api.clock.advance(FRESH_SECONDS - 1)
    assert "error_msg" in await api.workers("/get_endpoint_workers/", FRESH_ENDPOINT_ID)
    seen: list[set[str]] = []
    for _ in range(120):
        api.clock.advance(1.0)
        workers = await api.workers("/get_endpoint_workers/", FRESH_ENDPOINT_ID)
        assert isinstance(workers, list)
        seen.append({_status(w) for w in workers})
    assert "creating" in seen[1]
    assert set().union(*seen) >= {"creating", "loading", "model_loading", "ready"}


def test_the_exporter_loads_the_simulator_only_for_the_demo() -> None:
    """exporter.sim is imported by --demo and `simulate`, never by a normal run."""
    import subprocess
    import sys

    code = (
        "import sys, exporter.cli, exporter.service\n"
        "print(sorted(m for m in sys.modules if m.startswith('exporter.sim')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
