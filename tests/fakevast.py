"""A fake Vast worker-list API for the tests: a real aiohttp server on 127.0.0.1.

Each target answers with a programmable Behaviour: workers in either shape the real API uses, or
one of the failure forms seen in practice (401, 404, 429 with or without Retry-After, 5xx,
`error_msg` with 200, plain-text 400, HTML, truncated JSON, a hang, a dropped connection).
Every request is recorded so tests can check where the key travelled.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exporter.sim import instance_list

ENDPOINT_PATH = "/get_endpoint_workers/"
ENDPTJOBS_PATH = "/api/v0/endptjobs/"
WORKERGROUPS_PATH = "/api/v0/workergroups/"
AUTOJOBS_PATH = "/api/v0/autojobs/"
INSTANCES_PATH = instance_list.PATH
INSTANCES_V0_PATH = instance_list.V0_PATH
USER_PATH = "/api/v0/users/current/"
CHARGES_PATH = "/api/v0/charges/"
USER_EMAIL = "someone@example.com"
USER_SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPersonalKeyOfTheUser someone@laptop"
AUTOGROUP_PATH = "/get_autogroup_workers/"
WORKERGROUP_PATH = "/get_workergroup_workers/"


@dataclass
class Behaviour:
    """One answer: workers (`shape` "list" or "object") or a raw status/body, maybe delayed."""

    workers: list[dict[str, Any]] | None = None
    shape: str = "list"
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang_up: bool = False
    chunked: bool = False  # stream the body in pieces, with no Content-Length


def workers(*items: dict[str, Any], shape: str = "list") -> Behaviour:
    return Behaviour(workers=list(items), shape=shape)


def failure(
    status: int, body: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
) -> Behaviour:
    return Behaviour(status=status, body=body, headers=headers or {}, **kwargs)


# Every failure form the real API has been seen to produce, and the reason each must get.
FAILURES: dict[str, tuple[Behaviour, str]] = {
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
    "hang-up": (Behaviour(hang_up=True), "connection"),
}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # the event loop's time when it arrived (virtual in virtual_time tests)
    query: str = ""


class FakeVast:
    """The fake API. Targets default to HTTP 400 plain text, like an unknown endpoint on Vast."""

    def __init__(self, api_key: str, group_paths: tuple[str, ...] = (AUTOGROUP_PATH,)) -> None:
        self.api_key = api_key
        self.group_paths = group_paths
        self.listing_paths = (
            ENDPTJOBS_PATH,
            WORKERGROUPS_PATH,
            INSTANCES_PATH,
            INSTANCES_V0_PATH,
            USER_PATH,
            CHARGES_PATH,
        )
        # Account listing answers by path; an account without endpoints, as Vast answers it.
        self.listings: dict[str, Behaviour | Callable[[], Behaviour]] = {
            ENDPTJOBS_PATH: failure(400, "No endpoints for user 42 found."),
            WORKERGROUPS_PATH: failure(200, {"success": True, "results": []}),
            AUTOJOBS_PATH: failure(200, {"success": True, "results": []}),
            INSTANCES_V0_PATH: failure(410, instance_list.V0_GONE),
            USER_PATH: failure(200, user_record(credit=120.5, balance=-3.25)),
        }
        # Today's charges, page by page (tree format), as show_charges.yaml documents them;
        # `charges_refusal` answers instead, e.g. 403 for a key without billing permission.
        self.charge_pages: list[list[dict[str, Any]]] = [[]]
        self.charges_refusal: Behaviour | None = None
        # The v1 instance list: records answered as Vast pages and filters them; optionally
        # its one-request-a-second limit, and a failure instead of the Nth request.
        self.instance_records: list[dict[str, Any]] = []
        self.instances_rate: instance_list.RateLimit | None = None
        self.instance_faults: dict[int, Behaviour] = {}
        self.behaviours: dict[tuple[str, int], Behaviour | Callable[[], Behaviour]] = {}
        self.requests: list[Request] = []
        self.url = ""
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None

    def set(
        self, kind: str, target_id: int, behaviour: Behaviour | Callable[[], Behaviour]
    ) -> None:
        """What a target answers: one Behaviour, or a function called for every request."""
        self.behaviours[(kind, target_id)] = behaviour

    def requests_for(self, path: str, target_id: int | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path == path and (target_id is None or json.loads(r.body).get("id") == target_id)
        ]

    async def start(self) -> FakeVast:
        app = web.Application()
        app.router.add_post(ENDPOINT_PATH, self._handle)
        app.router.add_post(AUTOGROUP_PATH, self._handle)
        app.router.add_post(WORKERGROUP_PATH, self._handle)
        for path in (
            ENDPTJOBS_PATH,
            WORKERGROUPS_PATH,
            AUTOJOBS_PATH,
            USER_PATH,
            CHARGES_PATH,
            *instance_list_paths(),
        ):
            app.router.add_get(path, self._handle)
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

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._route(request)
        finally:
            self.in_flight -= 1

    async def _route(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Request(
                request.path,
                dict(request.headers),
                body,
                asyncio.get_running_loop().time(),
                request.query_string,
            )
        )
        listing = request.method == "GET"
        if request.path not in (ENDPOINT_PATH, *self.group_paths, *self.listing_paths):
            return web.Response(status=404, text="404: Not Found")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.Response(status=401, text="Unauthorized: invalid api_key")
        if listing:
            return await self._listing(request)
        try:
            target_id = int(json.loads(body)["id"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error_msg": "missing id"}, status=400)
        kind = "endpoint" if request.path == ENDPOINT_PATH else "worker_group"
        behaviour = self.behaviours.get((kind, target_id))
        if behaviour is None:
            return web.Response(status=400, text=f"endpoint {target_id} not found")
        if callable(behaviour):
            behaviour = behaviour()
        return await self._answer(request, behaviour)

    async def _stream(self, request: web.Request, behaviour: Behaviour) -> web.StreamResponse:
        data = json.dumps(behaviour.body).encode()
        response = web.StreamResponse(status=behaviour.status)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), 4096):
            await response.write(data[start : start + 4096])
        await response.write_eof()
        return response

    def set_account(self, endpoints: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
        """Listing answers for these endpoints and worker groups (with their api_key secrets)."""
        self.listings[ENDPTJOBS_PATH] = failure(200, {"success": True, "results": endpoints})
        groups_answer = failure(200, {"success": True, "results": groups})
        self.listings[WORKERGROUPS_PATH] = self.listings[AUTOJOBS_PATH] = groups_answer

    def set_instances(self, instances: list[dict[str, Any]]) -> None:
        self.instance_records = instances

    async def _listing(self, request: web.Request) -> web.StreamResponse:
        if request.path == INSTANCES_PATH:
            return await self._instances(request)
        if request.path == CHARGES_PATH:
            return await self._charges(request)
        behaviour = self.listings[request.path]
        if callable(behaviour):
            behaviour = behaviour()
        return await self._answer(request, behaviour)

    async def _instances(self, request: web.Request) -> web.StreamResponse:
        ordinal = len(self.requests_for(INSTANCES_PATH))
        fault = self.instance_faults.get(ordinal)
        if fault is not None:
            return await self._answer(request, fault)
        if self.instances_rate is not None and not self.instances_rate.allows(self.api_key):
            return web.Response(status=429, text=instance_list.TOO_FAST)
        records = [r for r in self.instance_records if isinstance(r.get("id"), int)]
        status, body = instance_list.answer(records, request.query)
        return web.json_response(body, status=status)

    async def _charges(self, request: web.Request) -> web.StreamResponse:
        if self.charges_refusal is not None:
            return await self._answer(request, self.charges_refusal)
        try:
            day = json.loads(request.query["select_filters"])["day"]
            int(day["gte"]), int(day["lte"])
        except (KeyError, ValueError, TypeError):
            message = "Must provide both 'day' gte and lte filters for instance charges"
            return web.json_response({"success": False, "msg": message}, status=400)
        token = request.query.get("after_token")
        index = 0
        if token is not None:
            number = token.removeprefix("page-")
            index = int(number) if token.startswith("page-") and number.isdigit() else -1
        if not 0 <= index < len(self.charge_pages):
            body = {"success": False, "error": "invalid_token", "msg": "Invalid pagination token"}
            return web.json_response(body, status=400)
        more = index + 1 < len(self.charge_pages)
        page = self.charge_pages[index]
        return web.json_response(
            {
                "success": True,
                "count": len(page),
                "total": sum(map(len, self.charge_pages)),
                "next_token": f"page-{index + 1}" if more else None,
                "results": page,
            }
        )

    async def _answer(self, request: web.Request, behaviour: Behaviour) -> web.StreamResponse:
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.hang_up:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if behaviour.workers is not None:
            payload: Any = behaviour.workers
            if behaviour.shape == "object":
                payload = {"workers": behaviour.workers}
            return web.json_response(payload, status=behaviour.status)
        body = behaviour.body
        if behaviour.chunked:
            return await self._stream(request, behaviour)
        if isinstance(body, dict | list):
            return web.json_response(body, status=behaviour.status, headers=behaviour.headers)
        if isinstance(body, str):
            body = body.encode()
        body = body or b""
        kinds = {b"<": "text/html", b"[": "application/json", b"{": "application/json"}
        return web.Response(
            status=behaviour.status,
            body=body,
            headers=behaviour.headers,
            content_type=kinds.get(body[:1], "text/plain"),
        )


def instance_list_paths() -> tuple[str, str]:
    return (INSTANCES_PATH, INSTANCES_V0_PATH)


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


def rotating(behaviours: Iterable[Behaviour]) -> Callable[[], Behaviour]:
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


def worker_group(group_id: int, endpoint_id: int, endpoint_name: str) -> dict[str, Any]:
    """A worker group of /api/v0/workergroups/, secret api_key included."""
    return {
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
