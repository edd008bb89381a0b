"""The Vast API client: one POST per poll, every failure turned into a classified PollError.

The key travels only in the Authorization header. Error texts are built here from status codes
and bodies, and the key is scrubbed from them, so nothing upstream can echo it into our logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp

from . import __version__
from .logs import REDACTED
from .pacing import ApiPath, Pacing
from .parsing import (
    NotReady,
    PollError,
    Worker,
    body_message,
    decode_json,
    parse_workers_payload,
    string_error,
)
from .targets import Kind, Target
from .traffic import RequestCounter

T = TypeVar("T")

ENDPOINT_PATH = "/get_endpoint_workers/"
# The seed documents the first; newer docs show the second. Try in order, remember what works.
WORKER_GROUP_PATHS = ("/get_autogroup_workers/", "/get_workergroup_workers/")
# No limit is published for them: they share polling.max_requests_per_second (exporter/pacing.py).
WORKER_LISTS = tuple(
    ApiPath(path, 0.0, source, host="api")
    for path, source in (
        (ENDPOINT_PATH, "the seed; get_endpoint_workers.yaml"),
        (WORKER_GROUP_PATHS[0], "the seed; get_autogroup_workers.yaml"),
        (WORKER_GROUP_PATHS[1], "vast-ai/docs serverless guides"),
    )
)
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
PARSE_IN_THREAD_BYTES = 256 * 1024


def create_session(concurrency: int) -> aiohttp.ClientSession:
    """The one long-lived session; its connection pool is bounded by the polling concurrency."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": f"vastai-exporter/{__version__}"},
        trust_env=False,  # it would also read ~/.netrc, whose credentials clash with our header
    )


def proxy_for(url: str) -> str | None:
    """The HTTP(S)_PROXY that applies to `url` (NO_PROXY honoured), as curl would use it."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class VastClient:
    """Reads worker lists (`vast.api_url`) and account listings (`vast.console_url`).

    Every public method raises PollError, with a key-free message, on any failure.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        api_key: str,
        timeout: float,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        console_url: str = "https://console.vast.ai",
        known_paths: dict[tuple[str, ...], str] | None = None,
        counter: RequestCounter | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._console_url = console_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_response_bytes = max_response_bytes
        # Which of several paths for a call exists, learnt by 404s; shared with a successor
        # client after a reload so it does not learn it again.
        self.known_paths: dict[tuple[str, ...], str] = {} if known_paths is None else known_paths
        self._proxies = {url: proxy_for(url) for url in (self._api_url, self._console_url)}
        self._counter = counter or RequestCounter()
        # Every path's spacing and 429 hold, and the worker lists' shared rate: the exporter's,
        # outliving this client.
        self.pacing = pacing or Pacing(WORKER_LISTS)

    async def fetch_workers(self, target: Target) -> list[Worker]:
        """The target's workers."""
        with self._scrubbed():
            if target.kind == Kind.ENDPOINT:
                return await self._fetch(ENDPOINT_PATH, int(target.id))
            group_id = int(target.id)
            return await self.first_that_exists(
                WORKER_GROUP_PATHS, lambda path: self._fetch(path, group_id)
            )

    async def get(
        self, path: str, parse: Callable[[Any], T], params: dict[str, str] | None = None
    ) -> T:
        """GET a console path (an account read) and parse its JSON with `parse`.

        The body is never quoted in an error: account answers hold secrets (endpoint api_keys,
        instance tokens, the user's email).
        """
        with self._scrubbed():
            return await self._console("GET", path, parse, params=params)

    async def post(self, path: str, parse: Callable[[Any], T], body: dict[str, Any]) -> T:
        """POST a JSON body to a console path (an offer search) and parse its JSON with `parse`:
        the key in the header, paced, counted and scrubbed as `get` is."""
        with self._scrubbed():
            return await self._console("POST", path, parse, payload=body)

    async def first_that_exists(
        self, paths: tuple[str, ...], call: Callable[[str], Awaitable[T]]
    ) -> T:
        """Call with the path of `paths` that worked last (else the first); on 404 try the
        others in turn, and remember the one that answers. Vast has renamed calls before."""
        first = self.known_paths.get(paths, paths[0])
        ordered = (first, *(path for path in paths if path != first))
        for index, path in enumerate(ordered):
            try:
                result = await call(path)
            except PollError as exc:
                if exc.reason == "not_found" and index + 1 < len(ordered):
                    continue
                raise
            self.known_paths[paths] = path
            return result
        raise AssertionError("unreachable: the last path either returns or raises")

    @contextlib.contextmanager
    def _scrubbed(self) -> Iterator[None]:
        """Re-raise a PollError (or NotReady) whose message echoes the key with the key redacted."""
        try:
            yield
        except PollError as exc:
            if self._api_key in exc.message:
                message = exc.message.replace(self._api_key, REDACTED)
                raise PollError(exc.reason, message, exc.retry_after) from None
            raise
        except NotReady as exc:
            if self._api_key in exc.message:
                raise NotReady(exc.message.replace(self._api_key, REDACTED)) from None
            raise

    async def _console(
        self,
        method: str,
        path: str,
        parse: Callable[[Any], T],
        params: dict[str, str] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> T:
        status, headers, body = await self._request(method, "console", path, payload, params)
        if not 200 <= status < 300:
            raise _status_error(status, headers, body)
        # Account answers hold secrets (endpoint api_keys, instance tokens): an error about one
        # must not quote it, so decoding errors here say where, not what.
        return await _parse_off_loop(lambda: parse(decode_json(body, quote=False)), len(body))

    async def _fetch(self, path: str, target_id: int) -> list[Worker]:
        status, headers, body = await self._request("POST", "api", path, {"id": target_id})
        if not 200 <= status < 300:
            raise _status_error(status, headers, body)
        return await _parse_off_loop(lambda: parse_body(body), len(body))

    async def _request(
        self,
        method: str,
        host: str,
        path: str,
        payload: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        """One request to `host` ("api": worker lists; "console": account reads), paced as
        its path is declared, counted by its route (the declared path: no query, no ids) and
        status code."""
        async with self.pacing.request(path):
            return await self._send(method, host, path, payload, params)

    async def _send(
        self,
        method: str,
        host: str,
        path: str,
        payload: dict[str, Any] | None,
        params: dict[str, str] | None,
    ) -> tuple[int, Any, bytes]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        base = self._api_url if host == "api" else self._console_url
        code: str | None = "connection"
        try:
            async with self._session.request(
                method,
                base + path,
                json=payload,
                params=params,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                proxy=self._proxies[base],
            ) as response:
                code = str(response.status)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self.pacing.answered(path, response.status, retry_after)
                body = await self._read_capped(response)
                return response.status, response.headers, body
        except TimeoutError:
            code = "timeout" if code == "connection" else code
            raise PollError("timeout", f"no answer within {self._timeout.total:g}s") from None
        except aiohttp.ClientResponseError as exc:  # not HTTP: bad status line, huge headers
            raise PollError("invalid_response", f"malformed HTTP answer: {exc.message}") from None
        except aiohttp.ClientError as exc:
            raise PollError("connection", f"{type(exc).__name__}: {exc}") from None
        except asyncio.CancelledError:  # the poll was stopped (reload, shutdown): no outcome
            code = None
            raise
        finally:
            if code is not None:
                route = self.pacing.route(urllib.parse.urlsplit(path).path)  # no ids
                self._counter.count(host, route, code)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """Read the body, refusing (without buffering) anything past max_response_bytes."""
        limit = self._max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise PollError("invalid_response", f"body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise PollError("invalid_response", f"body larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


async def _parse_off_loop(parse: Callable[[], T], size: int) -> T:
    """Parse small bodies at once; a large one in a thread (tens of ms, off the event loop)."""
    if size < PARSE_IN_THREAD_BYTES:
        return parse()
    return await asyncio.get_running_loop().run_in_executor(None, parse)


def parse_body(body: bytes) -> list[Worker]:
    return parse_workers_payload(decode_json(body))


def _status_error(status: int, headers: Any, body: bytes) -> PollError:
    """Classify a non-2xx answer."""
    message = f"HTTP {status}: {body_message(body)}"
    if status in (401, 403):
        return PollError("auth", message)
    if status == 404:
        return PollError("not_found", message)
    if status == 429:
        return PollError("rate_limited", message, parse_retry_after(headers.get("Retry-After")))
    if status >= 500:
        return PollError("server_error", message)
    if 400 <= status < 500:
        text = _json_string(body)
        if text is not None:  # Vast's documented error form, a bare string: classify its words
            error = string_error(text)
            return PollError(error.reason, f"HTTP {status}: {error.message}")
        return PollError("api_error", message)
    return PollError("invalid_response", f"unexpected HTTP {status}")


def _json_string(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, str) else None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
