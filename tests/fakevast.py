"""The tests' Vast API: the simulator's HTTP layer (exporter.sim.api) over a scripted account.

Each target answers with a scripted `Reply`: workers in either shape the real API uses, or one of
the failure forms seen in practice (401, 404, 429 with or without Retry-After, 5xx, `error_msg`
with 200, plain-text 400, HTML, truncated JSON, a hang, a dropped connection). Everything else
(the key check, unknown ids, the account reads, the instance list's paging, the charges' day
range and tokens, v0's 410) is the simulator's own code, so the demo and the tests meet one fake.
Every request is recorded so tests can check where the key travelled.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from exporter.sim import Reply, create_app, market, paths, ratelimit
from exporter.sim.api import route_of
from exporter.sim.billing import DAY, charges_answer

ENDPOINT_PATH = paths.ENDPOINT_WORKERS
ENDPTJOBS_PATH = paths.ENDPTJOBS
WORKERGROUPS_PATH = paths.WORKERGROUPS
AUTOJOBS_PATH = paths.AUTOJOBS
INSTANCES_PATH = paths.INSTANCES
INSTANCES_V0_PATH = paths.INSTANCES_V0
USER_PATH = paths.USER
CHARGES_PATH = paths.CHARGES
AUTOGROUP_PATH = paths.AUTOGROUP_WORKERS
WORKERGROUP_PATH = paths.WORKERGROUP_WORKERS
DEPLOYMENTS_PATH = paths.DEPLOYMENTS
DEPLOYMENT_VERSIONS_PATH = paths.DEPLOYMENT_VERSIONS  # a template: .format(id=...)
BUNDLES_PATH = paths.BUNDLES
PENDING_PATH = paths.PENDING_PRICE_INCREASES
USER_EMAIL = "someone@example.com"
USER_SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPersonalKeyOfTheUser someone@laptop"


def workers(*items: dict[str, Any], shape: str = "list") -> Reply:
    """A worker list, bare (`list`) or in the documented {"workers": [...]} shape (`object`)."""
    return Reply(body={"workers": list(items)} if shape == "object" else list(items))


def failure(
    status: int, body: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
) -> Reply:
    return Reply(status=status, body=body, headers=headers or {}, **kwargs)


# Every failure form the real API has been seen to produce, and the reason each must get.
FAILURES: dict[str, tuple[Reply, str]] = {
    "401": (failure(401, "Unauthorized"), "auth"),
    "403": (failure(403, {"success": False, "error": "forbidden", "msg": "no scope"}), "auth"),
    "404": (failure(404, "Not Found"), "not_found"),
    "429": (failure(429, "API requests too frequent endpoint threshold=3.0"), "rate_limited"),
    "500": (failure(500, "Internal Server Error"), "server_error"),
    "502-html": (failure(502, "<html><body>Bad Gateway</body></html>"), "server_error"),
    "400-json": (failure(400, {"error_msg": "bad id"}), "api_error"),
    "400-text": (
        failure(400, "authenticate_endpoint_apikey: invalid api_key or endpoint x not found"),
        "api_error",
    ),
    "html-200": (failure(200, "<!DOCTYPE html><html>maintenance</html>"), "invalid_response"),
    "truncated-json": (failure(200, b'[{"id": 1, "cur_load": 0.'), "invalid_response"),
    "wrong-type": (failure(200, {"workers": "none"}), "invalid_response"),
    "list-of-numbers": (failure(200, [1, 2, 3]), "invalid_response"),
    "string-json": (failure(200, b'"just a string"'), "api_error"),
    # Vast's OpenAPI (get_endpoint_workers.yaml): HTTP 200 whose body is a bare JSON string.
    "string-json-auth": (
        failure(200, b'"authenticate_endpoint_apikey: invalid api_key or endpoint x not found"'),
        "auth",
    ),
    "string-json-400-not-found": (failure(400, b'"workergroup 12 not found"'), "not_found"),
    "hang-up": (Reply(hang_up=True), "connection"),
}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # the event loop's time when it arrived (virtual in virtual_time tests)
    query: str = ""


Script = Reply | Callable[[], Reply]  # what a target answers: a Reply, or one per request


class FakeVast:
    """The simulated API over a scripted account (an `exporter.sim.Account`).

    A target answers what `set` scripted for it; an unscripted one answers as Vast answers an id
    it does not know. The account lists no endpoints until `set_account`, no instances until
    `set_instances`, and today's charges from `charge_nodes`; `listings` scripts any account
    read by path. `group_paths` and `listing_paths` say which calls exist (others: 404), as
    Vast's calls have been renamed over time."""

    def __init__(
        self,
        api_key: str,
        group_paths: tuple[str, ...] = (AUTOGROUP_PATH,),
    ) -> None:
        self.api_key = api_key
        self.group_paths = group_paths
        # Vast's limits (ratelimit.RateLimit) by path: none unless a test sets one.
        self.rate_limits: dict[str, ratelimit.Limit] = {}
        self.listing_paths = (
            ENDPTJOBS_PATH,
            WORKERGROUPS_PATH,
            INSTANCES_PATH,
            INSTANCES_V0_PATH,
            USER_PATH,
            CHARGES_PATH,
            DEPLOYMENTS_PATH,
            paths.DEPLOYMENTS_NO_SLASH,
            paths.DEPLOYMENT,
            DEPLOYMENT_VERSIONS_PATH,
            BUNDLES_PATH,
            PENDING_PATH,
        )
        self.listings: dict[str, Script] = {}
        self.endpoint_records: list[dict[str, Any]] = []
        self.group_records: list[dict[str, Any]] = []
        self.user_answer = user_record(credit=120.5, balance=-3.25)
        # Today's charges (tree format), as show_charges.yaml documents them; the simulator
        # pages them `charges_page_size` nodes at a time; `charges_refusal` answers instead.
        self.charge_nodes: list[dict[str, Any]] = []
        self.charges_page_size = 500
        self.charges_refusal: Reply | None = None
        # The v1 instance list, paged and filtered by the simulator; a failure instead of the
        # Nth request (counting from 1).
        self.instance_records: list[dict[str, Any]] = []
        self.instance_faults: dict[int, Reply] = {}
        # Deployments as show_deployments.yaml lists them, and each one's versions (newest
        # first; a deployment without an entry answers 404, as an unknown one).
        self.deployment_records: list[dict[str, Any]] = []
        self.version_records: dict[int, list[dict[str, Any]]] = {}
        # Supply and contracts: the marketplace the offer searches run over (sim/market.py
        # filters, orders and limits it), and the pending price increases' rows.
        self.offer_records: list[dict[str, Any]] = []
        self.price_increase_rows: list[dict[str, Any]] = []
        self.behaviours: dict[tuple[str, int], Script] = {}
        self.requests: list[Request] = []
        self.url = ""
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None

    # ----- scripting ------------------------------------------------------------------------

    def set(self, kind: str, target_id: int, behaviour: Script) -> None:
        """What a target answers: one Reply, or a function called for every request."""
        self.behaviours[(kind, target_id)] = behaviour

    def set_account(self, endpoints: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
        """The account's endpoints and worker groups (with their api_key secrets)."""
        self.endpoint_records, self.group_records = endpoints, groups

    def set_instances(self, instances: list[dict[str, Any]]) -> None:
        self.instance_records = instances

    def requests_for(self, path: str, target_id: int | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path == path and (target_id is None or json.loads(r.body).get("id") == target_id)
        ]

    # ----- the Account the simulator's HTTP layer answers from -------------------------------

    def reply(self, path: str, ident: int | None) -> Reply | None:
        if ident is not None:
            kind = "endpoint" if path == ENDPOINT_PATH else "worker_group"
            return _resolve(self.behaviours.get((kind, ident)))
        if path == CHARGES_PATH:
            return self.charges_refusal
        if path == INSTANCES_PATH:
            return self.instance_faults.get(len(self.requests_for(INSTANCES_PATH)))
        return _resolve(self.listings.get(path))

    def endpoint_workers(self, endpoint_id: int) -> list[dict[str, Any]] | None:
        return None  # only scripted targets exist

    def group_workers(self, group_id: int) -> list[dict[str, Any]] | None:
        return None

    def group_endpoint(self, group_id: int) -> int:
        return 0

    def not_ready(self, endpoint_id: int) -> str | None:
        return None

    def endpoints(self) -> list[dict[str, Any]]:
        return self.endpoint_records

    def worker_groups(self) -> list[dict[str, Any]]:
        return self.group_records

    def instances(self) -> list[dict[str, Any]]:
        return [r for r in self.instance_records if isinstance(r.get("id"), int)]

    def user(self) -> dict[str, Any]:
        return self.user_answer

    def charges(self, query: Mapping[str, str]) -> tuple[int, Any]:
        today = int(time.time() // DAY * DAY)
        return charges_answer(lambda _: self.charge_nodes, today, query, self.charges_page_size)

    def deployments(self) -> list[dict[str, Any]]:
        return self.deployment_records

    def deployment_versions(self, deployment_id: int) -> list[dict[str, Any]] | None:
        return self.version_records.get(deployment_id)

    def offers(self, body: Any) -> tuple[int, Any]:
        return market.search(self.offer_records, body)

    def pending_price_increases(self) -> dict[str, Any]:
        rows = self.price_increase_rows
        return {"success": True, "count": len(rows), "truncated": False,
                "pending_price_increases": rows}  # fmt: skip

    def searches(self) -> list[dict[str, Any]]:
        """The bodies of the offer searches received, in order."""
        return [json.loads(request.body) for request in self.requests_for(BUNDLES_PATH)]

    # ----- serving --------------------------------------------------------------------------

    async def start(self) -> FakeVast:
        app = create_app(
            self, self.api_key, rate_limits=self.rate_limits, middlewares=[self._middleware]
        )
        # Handlers still waiting out a `delay` at the end of a test are cancelled, not waited for.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.01)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Record the request, count it in flight, and 404 the calls that do not exist."""
        self.requests.append(
            Request(
                request.path,
                dict(request.headers),
                await request.read(),
                asyncio.get_running_loop().time(),
                request.query_string,
            )
        )
        if route_of(request) not in (ENDPOINT_PATH, *self.group_paths, *self.listing_paths):
            return web.Response(status=404, text="404: Not Found")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1


def _resolve(script: Script | None) -> Reply | None:
    return script() if callable(script) else script


def worker(worker_id: Any, **fields: Any) -> dict[str, Any]:
    """A worker object like the seed's example, with overrides."""
    base: dict[str, Any] = {
        "cur_load": 150,
        "cur_load_rolling_avg": 50,
        "cur_perf": 80,
        "disk_usage": 30,
        "dlperf": 105.87206734930771,
        "id": worker_id,
        "loaded_at": 1724275993.997,
        "measured_perf": 105.87206734930771,
        "perf": 100.5784639818423245,
        "reliability": 0.95,
        "reqs_working": 2,
        "status": "running",
    }
    base.update(fields)
    return base


def rotating(behaviours: Iterable[Reply]) -> Callable[[], Reply]:
    """A behaviour function that answers with each of `behaviours` in turn, forever."""
    cycle = itertools.cycle(list(behaviours))
    return lambda: next(cycle)


LISTING_SECRET = "endpoint-api-key-9f8e7d6c5b4a"


def endpoint(endpoint_id: int, name: str, **fields: Any) -> dict[str, Any]:
    """An endpoint of /api/v0/endptjobs/ as Vast lists it, secret api_key included."""
    base: dict[str, Any] = {
        "id": endpoint_id,
        "endpoint_name": name,
        "endpoint_state": "active",
        "min_load": 100.0,
        "min_cold_load": 0.0,
        "target_util": 0.9,
        "cold_mult": 2.5,
        "cold_workers": 2,
        "max_workers": 16,
        "max_queue_time": 30.0,
        "target_queue_time": 10.0,
        "inactivity_timeout": 600,
        "created_at": 1724275993.5,
        "user_id": 42,
        "api_key": LISTING_SECRET,
    }
    base.update(fields)
    return base


def worker_group(
    group_id: int, endpoint_id: int, endpoint_name: str, search_query: Any = None
) -> dict[str, Any]:
    """A worker group of /api/v0/workergroups/, secret api_key included; `search_query` only
    when given (an object, a string or a list of strings)."""
    record = {
        "id": group_id,
        "endpoint_id": endpoint_id,
        "endpoint_name": endpoint_name,
        "template_hash": "abc123",
        "template_id": 7,
        "gpu_ram": 24,
        "test_workers": 3,
        "created_at": "2026-11-01T10:00:00Z",
        "api_key": LISTING_SECRET,
    }
    if search_query is not None:
        record["search_query"] = search_query
    return record


def instance(instance_id: int, gpu_name: str, dph_total: float | None, **fields: Any) -> dict:
    """An instance of /api/v1/instances/ in show_instances.yaml's units: the fields the
    exporter reads, and secrets it must never ask for or export."""
    base: dict[str, Any] = {
        "id": instance_id,
        "gpu_name": gpu_name,
        "num_gpus": 1,
        "dph_total": dph_total,
        "dph_base": None if dph_total is None else round(dph_total - 0.0021, 6),
        "storage_total_cost": 0.0021,
        "machine_id": 9000 + instance_id % 1000,
        "geolocation": "Sweden, SE",
        "actual_status": "running",
        "gpu_util": 72.5,  # percent
        "gpu_temp": 61.0,
        "gpu_totalram": 24576,  # MiB
        "gpu_ram": 24576,
        "vmem_usage": 20.5,  # GB
        "cpu_util": 0.25,
        "mem_usage": 3.5,  # GB
        "mem_limit": 15.71815424,
        "reliability2": 0.9686655,
        "ssh_host": "ssh5.vast.ai",
        "public_ipaddr": "192.0.2.45",
        "jupyter_token": "secret-jupyter-token",
    }
    base.update(fields)
    return base


def user_record(credit: float | None, balance: float | None) -> dict[str, Any]:
    """/api/v0/users/current/ as show_user.yaml documents it, with the personal data it holds."""
    return {
        "id": 42,
        "key_id": 9001,
        "email": USER_EMAIL,
        "ssh_key": USER_SSH_KEY,
        "balance": balance,
        "credit": credit,
        "sid": "session-id-123",
    }


def charge_item(kind: str, amount: float) -> dict[str, Any]:
    return {"start": 0, "end": 0, "type": kind, "source": None, "description": kind,
            "amount": amount, "metadata": {}, "items": []}  # fmt: skip


def contract(kind: str, ident: int, metadata: dict | None = None, **items: float) -> dict:
    """A contract of the charges tree (an instance or volume) with its items by type."""
    return {
        "start": 0,
        "end": 0,
        "type": kind,
        "source": f"{kind}-{ident}",
        "description": f"{kind} {ident}",
        "amount": round(sum(items.values()), 3),
        "metadata": metadata or {},
        "items": [charge_item(k, v) for k, v in items.items()],
    }


def wrapper(source: str, children: list[dict], **metadata: int) -> dict[str, Any]:
    """A tree-format serverless wrapper: endpoint-<id> or workergroup-<id>."""
    return {
        "start": 0,
        "end": 0,
        "type": "serverless",
        "source": source,
        "description": source,
        "amount": round(sum(c["amount"] for c in children), 3),
        "metadata": metadata,
        "items": children,
    }


DEPLOYMENT_ENV = "-p 8000:8000/tcp -e HF_TOKEN=hf_deploymentSecretToken0042"
DEPLOYMENT_S3_KEY = "deployments/42/644/s3-object-key-5e3f.tar.gz"
DEPLOYMENT_SEARCH = "gpu_name=RTX_4090 secret_search_marker=1"


def deployment(deployment_id: int, endpoint_id: int | None, **fields: Any) -> dict[str, Any]:
    """A deployment of /api/v0/deployments/ as show_deployments.yaml documents it, with the
    env, s3_key and search_params the exporter must never keep, log or export."""
    base: dict[str, Any] = {
        "id": deployment_id,
        "name": "square",
        "tag": "default",
        "image": "vastai/base-image:latest",
        "endpoint_id": endpoint_id,
        "env": DEPLOYMENT_ENV,
        "file_hash": "9b74c9897bac770ffc029102a200c5de",
        "s3_key": DEPLOYMENT_S3_KEY,
        "search_params": DEPLOYMENT_SEARCH,
        "current_version_id": 31,
        "last_healthy_version_id": 31,
        "storage": 16.0,
        "ttl": None,
        "last_client_heartbeat": None,
        "created_at": 1764000000.5,
        "updated_at": 1764500000.25,
    }
    base.update(fields)
    return base


def version(version_id: int, label: str | None, **fields: Any) -> dict[str, Any]:
    """A version of /api/v0/deployment/{id}/versions/ (Vast's backend spec: no published one)."""
    base: dict[str, Any] = {
        "id": version_id,
        "file_hash": f"hash-{version_id}",
        "version_label": label,
        "file_size": 20480,
        "created_at": 1764000000.0 + version_id,
        "last_used_at": 1764500000.0,
    }
    base.update(fields)
    return base


def offer(offer_id: int, gpu_name: str, num_gpus: int, dph_base: float, **fields: Any) -> dict:
    """An offer of /api/v0/bundles/ as search_offers.yaml shows one, host data included (never
    to be kept); sim/market.py prices it (dph_total = dph_base + storage) and filters it."""
    base: dict[str, Any] = {
        "id": offer_id,
        "ask_contract_id": offer_id,
        "machine_id": 7_770_000 + offer_id,
        "host_id": 5_550_000 + offer_id,
        "public_ipaddr": f"203.0.113.{offer_id % 250 + 1}",
        "geolocation": "Atlantis, AT",
        "hostname": "gpu-host.example.org",
        "gpu_name": gpu_name,
        "num_gpus": num_gpus,
        "gpu_ram": 24564,
        "reliability": 0.99,
        "verified": True,
        "rentable": True,
        "rented": False,
        "external": False,
        "dph_base": dph_base,
        "min_bid": round(dph_base / 2, 4),
        "storage_cost": 0.0,  # $/GB/month: dph_total = dph_base
        "dlperf": 100.0,
        "total_flops": 80.0,
    }
    base.update(fields)
    return base


def price_increase(
    contract_id: Any,
    old_gpu_per_hour: float | None,
    new_gpu_per_hour: float | None,
    contract_end: float | None,
    ask_end: float | None,
    **fields: Any,
) -> dict[str, Any]:
    """A row of /api/v0/instances/pending-price-increases/ as vast-cli's list_pending
    documents it: GPU costs per GPU per second (given here per hour)."""
    row: dict[str, Any] = {
        "pending_price_increase_id": 7001,
        "contract_id": contract_id,
        "host_id": 424_242,
        "new_gpu_costpersec": None if new_gpu_per_hour is None else new_gpu_per_hour / 3600,
        "new_disk_ram_costpersec": None,
        "new_bwu_cost": None,
        "new_bwd_cost": None,
        "new_platform_fee": None,
        "old_gpu_costpersec": None if old_gpu_per_hour is None else old_gpu_per_hour / 3600,
        "old_disk_ram_costpersec": 3.2e-08,
        "old_bwu_cost": 0.002,
        "old_bwd_cost": 0.002,
        "old_platform_fee": 0.0,
        "contract_end_date": contract_end,
        "ask_end_date": ask_end,
        "created_at": 1796000000.0,
    }
    row.update(fields)
    return row
