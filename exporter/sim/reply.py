"""A scripted answer, and how the simulated API sends it: the fault-injection hook.

The simulated account answers most calls from its state; a `Reply` replaces that answer with any
form the real API has been seen to produce (4xx and 5xx with text, HTML or JSON bodies, HTTP 200
with a bare string or `{"error_msg"}`, truncated JSON, Retry-After headers), slowly, in chunks,
or not at all (the connection dropped). The simulation's flaky worker group answers with them,
and the tests script every target of their fake account with them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_CONTENT_TYPES = {b"<": "text/html", b"[": "application/json", b"{": "application/json"}
_CHUNK = 4096


@dataclass(frozen=True)
class Reply:
    """One answer. `body`: JSON (dict or list) is serialized; str or bytes go as they are, with
    a content type guessed from the first byte (HTML, JSON, else plain text)."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    hang_up: bool = False  # close the connection instead of answering
    chunked: bool = False  # stream the body in pieces, with no Content-Length


def _encoded(body: bytes | str | dict[str, Any] | list[Any] | None) -> tuple[bytes, str]:
    if isinstance(body, dict | list):
        return json.dumps(body).encode(), "application/json"
    data = body.encode() if isinstance(body, str) else body or b""
    return data, _CONTENT_TYPES.get(data[:1], "text/plain")


async def send(request: web.Request, reply: Reply) -> web.StreamResponse:
    """Answer `request` as `reply` says."""
    if reply.delay:
        await asyncio.sleep(reply.delay)
    if reply.hang_up:
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=500)
    data, content_type = _encoded(reply.body)
    if not reply.chunked:
        return web.Response(
            status=reply.status, body=data, headers=dict(reply.headers), content_type=content_type
        )
    response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
    response.content_type = content_type
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(data), _CHUNK):
        await response.write(data[start : start + _CHUNK])
    await response.write_eof()
    return response
