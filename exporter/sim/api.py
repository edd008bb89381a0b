"""The simulated API over HTTP: run.vast.ai's worker lists and console.vast.ai's account reads.

It answers as Vast documents (the OpenAPI in vast-ai/docs): bare-string errors with HTTP 200,
`{"error_msg"}` while an endpoint is not ready, an account without endpoints as HTTP 400, the v1
instance list paged and rate-limited, the v0 list gone (410) but one v0 instance still shown,
charges in tree format, the user under both spellings vast-cli uses, deployments and their
versions (404 for an unknown one). It is read-only: ``/route/``, ``/update_workers/`` and the
deployments' start, stop, heartbeat and delete calls are deliberately absent.

What it answers from is an `Account`: the `Simulation` for ``--demo`` and ``simulate``, or a
test's scripted account. Either may replace any answer with a `Reply` (the fault-injection hook),
so one HTTP layer serves the demo and every test.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from aiohttp import web

from . import instance_list, paths, ratelimit
from .model import OBJECT_SHAPE_GROUP_ID, Simulation
from .reply import Reply, send


class Account(Protocol):
    """What the simulated API answers from."""

    def reply(self, path: str, ident: int | None) -> Reply | None:
        """An answer that replaces the normal one, asked once the key is checked: for a worker
        list (`ident` its id) or an account read (`ident` None)."""

    def endpoint_workers(self, endpoint_id: int) -> list[dict[str, Any]] | None: ...
    def group_workers(self, group_id: int) -> list[dict[str, Any]] | None: ...
    def group_endpoint(self, group_id: int) -> int: ...
    def not_ready(self, endpoint_id: int) -> str | None: ...
    def endpoints(self) -> list[dict[str, Any]]: ...
    def worker_groups(self) -> list[dict[str, Any]]: ...
    def instances(self) -> list[dict[str, Any]]: ...
    def user(self) -> dict[str, Any]: ...
    def charges(self, query: Mapping[str, str]) -> tuple[int, Any]: ...
    def deployments(self) -> list[dict[str, Any]]: ...
    def deployment_versions(self, deployment_id: int) -> list[dict[str, Any]] | None:
        """The versions of a deployment, newest first; None for an unknown deployment."""

    # Supply and contracts: an offer search's (status, answer) for its body, and the pending
    # price increases' envelope.
    def offers(self, body: Any) -> tuple[int, Any]: ...
    def pending_price_increases(self) -> dict[str, Any]: ...


_ACCOUNT_KEY = web.AppKey("account", object)  # an Account
_API_KEY = web.AppKey("api_key", object)  # str | None
_LIMITS_KEY = web.AppKey("rate_limits", dict)  # route -> ratelimit.Limit


def _account(request: web.Request) -> Account:
    return request.app[_ACCOUNT_KEY]  # type: ignore[return-value]


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


def route_of(request: web.Request) -> str:
    """The route a request matched: its path, or the template (`{id}`) it is an instance of."""
    resource = request.match_info.route.resource
    return request.path if resource is None else resource.canonical


def _too_fast(request: web.Request, key: str) -> web.Response | None:
    """Vast's 429 if this call breaks its route's limit for this key, else None."""
    limit = request.app[_LIMITS_KEY].get(route_of(request))
    if limit is None or limit.allows(key):
        return None
    return _text(429, ratelimit.too_fast(limit.interval))


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


def _refusal(what: str, ident: int, known: bool, not_ready: Callable[[], str | None]) -> Any:
    """What Vast answers instead of a worker list, if anything: for an unknown id, HTTP 200 whose
    body is a bare JSON string (get_endpoint_workers.yaml and get_autogroup_workers.yaml show
    it); while the endpoint cannot be listed yet, HTTP 200 `{"error_msg": ...}`."""
    if not known:
        return f"authenticate_{what}_apikey: invalid api_key or {what} {ident} not found"
    pending = not_ready()
    return None if pending is None else {"error_msg": pending}


def _worker_list(
    what: str,
    workers_of: Callable[[Account, int], list[dict[str, Any]] | None],
    endpoint_of: Callable[[Account, int], int],
) -> Callable[[web.Request], Any]:
    """A POST handler for a worker-list call (`what`: endpoint or workergroup): the key, the id,
    then the account's scripted reply if it has one, else its workers or Vast's refusal."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ident = await _read_id(request)
        if isinstance(ident, web.Response):
            return ident
        account = _account(request)
        scripted = account.reply(request.path, ident)
        if scripted is not None:
            return await send(request, scripted)
        workers = workers_of(account, ident)
        refusal = _refusal(
            what, ident, workers is not None, lambda: account.not_ready(endpoint_of(account, ident))
        )
        if refusal is not None:
            return web.json_response(refusal)
        # The documented {"workers": [...]} shape, from one group; the others answer a bare list.
        shaped = what == "workergroup" and ident == OBJECT_SHAPE_GROUP_ID
        return web.json_response({"workers": workers} if shaped else workers)

    return handler


def _account_read(
    answer: Callable[[Account, web.Request], Any],
    unauthorized: Callable[[], web.Response] = _unauthorized,
) -> Callable[[web.Request], Any]:
    """A handler for a console read: bearer key required, as on console.vast.ai (`unauthorized`
    answers without one); then the account's scripted reply if it has one, the path's rate
    limit, else `answer` (a response, or a coroutine of one)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        key = _bearer(request)
        if not _authorized(request, key):
            return unauthorized()
        account = _account(request)
        scripted = account.reply(request.path, None)
        if scripted is not None:
            return await send(request, scripted)
        if (refusal := _too_fast(request, key)) is not None:
            return refusal
        response = answer(account, request)
        return await response if inspect.isawaitable(response) else response

    return handler


def _endpoints(account: Account, request: web.Request) -> web.StreamResponse:
    """GET /api/v0/endptjobs/; an account without endpoints is HTTP 400 invalid_args, as
    vast-ai/docs api-reference/openapi.yaml (/api/v0/endptjobs, 400) shows it."""
    results = account.endpoints()
    if not results:
        body = {"success": False, "error": "invalid_args", "msg": "No endpoints for user found"}
        return web.json_response(body, status=400)
    return web.json_response({"success": True, "results": results})


def _groups(account: Account, request: web.Request) -> web.StreamResponse:
    return web.json_response({"success": True, "results": account.worker_groups()})


def _instances_v1(account: Account, request: web.Request) -> web.StreamResponse:
    """GET /api/v1/instances/: paged and filtered (see instance_list)."""
    status, body = instance_list.answer(account.instances(), request.query)
    return web.json_response(body, status=status)


def _instances_v0(account: Account, request: web.Request) -> web.StreamResponse:
    """The retired v0 list: HTTP 410 deprecated_endpoint."""
    return web.json_response(instance_list.V0_GONE, status=410)


def _instance_v0(account: Account, request: web.Request) -> web.StreamResponse:
    """GET /api/v0/instances/{id}/ (show_instance.yaml): `{"instances": record}`; an id the
    account does not hold is `{"instances": null}`, which vast-cli's show_instance reads as
    "not found or no longer exists"; a non-integer id is 400 invalid_args."""
    try:
        ident = int(request.match_info["id"])
    except ValueError:
        body = {"success": False, "error": "invalid_args", "msg": "Invalid instance ID"}
        return web.json_response(body, status=400)
    found = next((r for r in account.instances() if r["id"] == ident), None)
    return web.json_response({"instances": found})


def _user(account: Account, request: web.Request) -> web.StreamResponse:
    return web.json_response(account.user())


def _charges(account: Account, request: web.Request) -> web.StreamResponse:
    status, body = account.charges(request.query)
    return web.json_response(body, status=status)


def _deployments(account: Account, request: web.Request) -> web.StreamResponse:
    """GET /api/v0/deployments/ (show_deployments.yaml)."""
    return web.json_response({"success": True, "deployments": account.deployments()})


def _path_id(request: web.Request) -> int | None:
    text = request.match_info.get("id", "")
    return int(text) if text.isdigit() else None


def _no_deployment(ident: str) -> web.Response:
    """show_deployment.yaml's 404, in its Error schema."""
    body = {"success": False, "error": "not_found", "msg": f"Deployment {ident} not found."}
    return web.json_response(body, status=404)


def _deployment(account: Account, request: web.Request) -> web.StreamResponse:
    """GET /api/v0/deployment/{id}/ (show_deployment.yaml): the list's record with
    `endpoint_state` (its endpoint's) and `worker_count` (null, as Vast often answers it)."""
    ident = _path_id(request)
    found = [d for d in account.deployments() if ident is not None and d.get("id") == ident]
    if not found:
        return _no_deployment(request.match_info.get("id", ""))
    states = {e.get("id"): e.get("endpoint_state") for e in account.endpoints()}
    record = found[0]
    state = states.get(record.get("endpoint_id"))
    detail = {**record, "endpoint_state": state, "worker_count": None}
    return web.json_response({"success": True, "deployment": detail})


def _deployment_versions(account: Account, request: web.Request) -> web.StreamResponse:
    """GET /api/v0/deployment/{id}/versions/ (vastai 1.9.1 show_deployment_versions; no
    published schema): `{"success": true, "versions": [...]}`, newest first."""
    ident = _path_id(request)
    versions = None if ident is None else account.deployment_versions(ident)
    if versions is None:
        return _no_deployment(request.match_info.get("id", ""))
    return web.json_response({"success": True, "versions": versions})


def _invalid_user() -> web.Response:
    """A missing or unknown key on the offer search: HTTP 404 "Invalid user key", as
    search_offers.yaml publishes it."""
    body = {"success": False, "error": "invalid_user", "msg": "Invalid user key"}
    return web.json_response(body, status=404)


async def _bundles(account: Account, request: web.Request) -> web.StreamResponse:
    """POST /api/v0/bundles/, the offer search (search_offers.yaml): the body is the search
    object; the answer's Content-Type is exactly application/json, which vast-cli's search
    offers requires."""
    try:
        search: Any = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        search = None
    status, answer = account.offers(search)
    return web.Response(
        status=status, body=json.dumps(answer).encode(), content_type="application/json"
    )


def _pending_price_increases(account: Account, request: web.Request) -> web.StreamResponse:
    """GET /api/v0/instances/pending-price-increases/ (vast-cli vastai/api/price_increase.py)."""
    return web.json_response(account.pending_price_increases())


def _login_first(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    """403 without a key, before anything else (show_charges.yaml)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not _bearer(request):
            return web.json_response(
                {"success": False, "error": "auth_error", "msg": "This action requires login."},
                status=403,
            )
        return await handler(request)

    return wrapped


def create_app(
    account: Account,
    api_key: str | None = None,
    *,
    rate_limits: dict[str, ratelimit.Limit] | None = None,
    middlewares: Iterable[Any] = (),
) -> web.Application:
    """The simulated API as an aiohttp app; with ``api_key`` set, only that key is accepted.
    `rate_limits` by route (read on every request): by default `ratelimit.LIMITS` and
    `ratelimit.WINDOWS`."""
    app = web.Application(middlewares=list(middlewares))
    app[_ACCOUNT_KEY] = account
    app[_API_KEY] = api_key
    app[_LIMITS_KEY] = ratelimit.default_limits() if rate_limits is None else rate_limits
    endpoint_workers = _worker_list(
        "endpoint", lambda account, ident: account.endpoint_workers(ident), lambda _, ident: ident
    )
    group_workers = _worker_list(
        "workergroup",
        lambda account, ident: account.group_workers(ident),
        lambda account, ident: account.group_endpoint(ident),
    )
    app.router.add_post(paths.ENDPOINT_WORKERS, endpoint_workers)
    for path in paths.GROUP_WORKERS:
        app.router.add_post(path, group_workers)
    app.router.add_get(paths.ENDPTJOBS, _account_read(_endpoints))
    app.router.add_get(paths.WORKERGROUPS, _account_read(_groups))
    app.router.add_get(paths.AUTOJOBS, _account_read(_groups))
    app.router.add_get(paths.USER, _account_read(_user))
    app.router.add_get(paths.USER_NO_SLASH, _account_read(_user))
    app.router.add_get(paths.CHARGES, _login_first(_account_read(_charges)))
    app.router.add_get(paths.INSTANCES, _account_read(_instances_v1))
    app.router.add_get(paths.INSTANCES_V0, _account_read(_instances_v0))
    app.router.add_get(paths.DEPLOYMENTS, _account_read(_deployments))
    app.router.add_get(paths.DEPLOYMENTS_NO_SLASH, _account_read(_deployments))
    app.router.add_get(paths.DEPLOYMENT, _account_read(_deployment))
    app.router.add_get(paths.DEPLOYMENT_VERSIONS, _account_read(_deployment_versions))
    app.router.add_get(paths.INSTANCE, _account_read(_instance_v0))
    app.router.add_post(paths.BUNDLES, _account_read(_bundles, _invalid_user))
    app.router.add_get(paths.PENDING_PRICE_INCREASES, _account_read(_pending_price_increases))
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
