"""The simulated API over HTTP: run.vast.ai's worker lists and console.vast.ai's account reads.

It answers as Vast documents (the OpenAPI in vast-ai/docs): bare-string errors with HTTP 200,
`{"error_msg"}` while an endpoint is not ready, the v1 instance list paged and rate-limited, v0
gone (410), charges in tree format. It is read-only: ``/route/`` and ``/update_workers/`` are
deliberately absent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import instance_list
from .model import OBJECT_SHAPE_GROUP_ID, Simulation

_SIM_KEY = web.AppKey("simulation", Simulation)
_API_KEY = web.AppKey("api_key", object)  # str | None
_RATE_KEY = web.AppKey("instances_rate_limit", instance_list.RateLimit)
_CHARGES_RATE_KEY = web.AppKey("charges_rate_limit", instance_list.RateLimit)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _error(msg: str) -> web.Response:
    return web.json_response({"error_msg": msg}, status=400)


def _bearer(request: web.Request) -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _authorized(request: web.Request, key: str) -> bool:
    expected = request.app[_API_KEY]
    return bool(key) and (expected is None or key == expected)


def _unauthorized() -> web.Response:
    return _text(401, "401 Unauthorized: missing or invalid API key")


async def _read_id(request: web.Request) -> int | web.Response:
    """Authenticate a worker-list call and return the requested id, or the error response."""
    try:
        body: Any = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
        valid = False
    else:
        valid = isinstance(body, dict)
    body_key = body.get("api_key") if isinstance(body, dict) else None
    key = _bearer(request) or (body_key if isinstance(body_key, str) else "")
    if not _authorized(request, key.strip()):
        return _unauthorized()
    if not valid:
        return _error('request body must be a JSON object like {"id": 123}')
    ident = body.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        return _error("missing or invalid 'id': expected an integer")
    return ident


def _refusal(
    what: str, ident: int, known: bool, not_ready: Callable[[], str | None]
) -> web.Response | None:
    """What Vast answers instead of a worker list, if anything: for an unknown id, HTTP 200 whose
    body is a bare JSON string (get_endpoint_workers.yaml and get_autogroup_workers.yaml show
    it); while the endpoint cannot be listed yet, HTTP 200 `{"error_msg": ...}`."""
    if not known:
        message = f"authenticate_{what}_apikey: invalid api_key or {what} {ident} not found"
        return web.json_response(message)
    pending = not_ready()
    return None if pending is None else web.json_response({"error_msg": pending})


async def _endpoint_workers(request: web.Request) -> web.Response:
    ident = await _read_id(request)
    if isinstance(ident, web.Response):
        return ident
    sim = request.app[_SIM_KEY]
    workers = sim.endpoint_workers(ident)
    refusal = _refusal("endpoint", ident, workers is not None, lambda: sim.not_ready(ident))
    return refusal or web.json_response(workers)


async def _group_workers(request: web.Request) -> web.Response:
    ident = await _read_id(request)
    if isinstance(ident, web.Response):
        return ident
    sim = request.app[_SIM_KEY]
    workers = sim.group_workers(ident)
    refusal = _refusal(
        "workergroup", ident, workers is not None, lambda: sim.not_ready(sim.group_endpoint(ident))
    )
    if refusal is not None:
        return refusal
    fault = sim.group_fault(ident)
    if fault is None:
        shaped = {"workers": workers} if ident == OBJECT_SHAPE_GROUP_ID else workers
        return web.json_response(shaped)
    if fault.payload is not None:
        return web.json_response(fault.payload, status=fault.status)
    return _text(fault.status, fault.text or "")


def _listing(results: Callable[[Simulation], list[dict[str, Any]]]) -> Any:
    """A GET handler for a console listing; bearer key required, as on console.vast.ai."""

    async def handler(request: web.Request) -> web.Response:
        if not _authorized(request, _bearer(request)):
            return _unauthorized()
        return web.json_response({"success": True, "results": results(request.app[_SIM_KEY])})

    return handler


async def _instances_v1(request: web.Request) -> web.Response:
    """GET /api/v1/instances/: paged, filtered, one request a second per key."""
    key = _bearer(request)
    if not _authorized(request, key):
        return _unauthorized()
    if not request.app[_RATE_KEY].allows(key):
        return _text(429, instance_list.TOO_FAST)
    status, body = instance_list.answer(request.app[_SIM_KEY].instances(), request.query)
    return web.json_response(body, status=status)


async def _user(request: web.Request) -> web.Response:
    if not _authorized(request, _bearer(request)):
        return _unauthorized()
    return web.json_response(request.app[_SIM_KEY].user())


async def _charges(request: web.Request) -> web.Response:
    """GET /api/v0/charges/: 403 without a key (show_charges.yaml), one request a second."""
    key = _bearer(request)
    if not key:
        return web.json_response(
            {"success": False, "error": "auth_error", "msg": "This action requires login."},
            status=403,
        )
    if not _authorized(request, key):
        return _unauthorized()
    if not request.app[_CHARGES_RATE_KEY].allows(key):
        return _text(429, instance_list.TOO_FAST)
    status, body = request.app[_SIM_KEY].charges(request.query)
    return web.json_response(body, status=status)


async def _instances_v0(request: web.Request) -> web.Response:
    """The retired v0 list: HTTP 410 deprecated_endpoint."""
    if not _authorized(request, _bearer(request)):
        return _unauthorized()
    return web.json_response(instance_list.V0_GONE, status=410)


def create_app(sim: Simulation, api_key: str | None = None) -> web.Application:
    """The simulated API as an aiohttp app; with ``api_key`` set, only that key is accepted."""
    app = web.Application()
    app[_SIM_KEY] = sim
    app[_API_KEY] = api_key
    app.router.add_post("/get_endpoint_workers/", _endpoint_workers)
    app.router.add_post("/get_autogroup_workers/", _group_workers)
    app.router.add_post("/get_workergroup_workers/", _group_workers)
    groups = _listing(Simulation.worker_groups)
    app.router.add_get("/api/v0/endptjobs/", _listing(Simulation.endpoints))
    app.router.add_get("/api/v0/workergroups/", groups)
    app.router.add_get("/api/v0/autojobs/", groups)
    app[_RATE_KEY] = instance_list.RateLimit()
    app[_CHARGES_RATE_KEY] = instance_list.RateLimit()
    app.router.add_get("/api/v0/users/current/", _user)
    app.router.add_get("/api/v0/charges/", _charges)
    app.router.add_get(instance_list.PATH, _instances_v1)
    app.router.add_get(instance_list.V0_PATH, _instances_v0)
    return app


async def start_simulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sim: Simulation | None = None,
    api_key: str | None = None,
) -> tuple[web.AppRunner, str]:
    """Start on host:port; return (runner, base URL such as 'http://127.0.0.1:41234').

    The URL carries the real bound port, so port 0 (pick a free one) is safe for --demo and tests.
    """
    runner = web.AppRunner(create_app(sim or Simulation(), api_key), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{shown}:{bound_port}"
