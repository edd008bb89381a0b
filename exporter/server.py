"""The HTTP side: /metrics from the render cache, a landing page, and health endpoints.

No handler here ever calls the Vast API: a scrape copies the bytes rendered after the last poll and
adds only the exporter's own process and Python figures, read as it asks.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiohttp import web

from . import __version__
from .exposition import RuntimeFamilies
from .reads import awaited
from .render_loop import MetricsCache
from .scheduler import TargetState
from .webconfig import BasicAuth

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vastai-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.down{{color:#b00}}</style>
</head><body>
<h1>vastai-exporter</h1>
<p>Prometheus exporter for Vast.ai Serverless, version {version}.</p>
<p><a href="/metrics">Metrics</a> &middot; <a href="/-/healthy">Health</a> &middot;
<a href="/-/ready">Readiness</a></p>
<p>{reload}</p>
<h2>Targets</h2>
<table><tr><th>kind</th><th>id</th><th>name</th><th>up</th><th>workers</th>
<th>last success</th><th>last error reason</th><th>message</th></tr>
{rows}
</table>
<h2>Settings</h2>
<table>
{settings}
</table></body></html>
"""
MAX_MESSAGE = 200  # characters of an error message shown on the landing page


LIFECYCLE_DISABLED = "Lifecycle API is not enabled."
RELOAD_ENABLED = "POST /-/reload (or SIGHUP) re-reads the config file."
RELOAD_DISABLED = (
    "SIGHUP re-reads the config file. POST /-/reload is off: start with "
    "<code>--web.enable-lifecycle</code> to serve it."
)

Reload = Callable[[], Awaitable["str | None"]]
Settings = Callable[[], Iterable[tuple[str, str]]]


class ExporterApp:
    """Builds the aiohttp application over the metrics cache, with optional basic auth."""

    def __init__(
        self,
        cache: MetricsCache,
        reload: Reload,
        auth: BasicAuth | None = None,
        headers: Callable[[], Mapping[str, str]] = dict,
        redact: Callable[[str], str] = lambda text: text,
        *,
        lifecycle: bool = False,
        settings: Settings = lambda: (),
    ) -> None:
        self._cache = cache
        self._reload = reload
        self._redact = redact
        self._auth = auth
        self._headers = headers  # read per response: the web config may change
        self._lifecycle = lifecycle
        self._settings = settings
        self._runtime = RuntimeFamilies()
        self._ready = False

    def build(self) -> web.Application:
        middlewares = [self._auth.middleware] if self._auth else []
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/", self.landing)
        app.router.add_get("/-/healthy", self.healthy)
        app.router.add_get("/-/ready", self.ready)
        app.router.add_post("/-/reload", self.reload)
        app.on_response_prepare.append(self._add_headers)
        return app

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self._headers())

    async def reload(self, request: web.Request) -> web.Response:
        """Re-read the config file: 200 when applied, 500 with the reason when refused; 403
        without --web.enable-lifecycle, as Prometheus answers."""
        if not self._lifecycle:
            return web.Response(status=403, text=f"{LIFECYCLE_DISABLED}\n")
        error = await self._reload()
        if error is None:
            return web.Response(text="Reloaded.\n")
        text = f"Reload failed, running config kept: {self._redact(error)}\n"
        return web.Response(status=500, text=text)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """Cached bytes in the format and encoding the scraper asked for, followed by the
        process and Python families, the only ones collected per scrape. What Prometheus asks
        for (OpenMetrics, gzip) is always rendered already, another form once per render, off
        the loop; the exposition is taken once, so the body is of one snapshot."""
        exposition = self._cache.exposition
        chunks, content_type, encoding = await exposition.select(
            request.headers.get("Accept", ""),
            request.headers.get("Accept-Encoding", ""),
            lambda openmetrics: self._runtime.render(openmetrics, exposition.snapshot.exclude),
        )
        response = web.StreamResponse(headers={"Content-Type": content_type})
        if encoding:
            response.headers["Content-Encoding"] = encoding
        response.headers["Vary"] = "Accept, Accept-Encoding"
        response.content_length = sum(len(chunk) for chunk in chunks)
        await response.prepare(request)
        if request.method != "HEAD":  # headers only; a StreamResponse would send the body too
            for chunk in chunks:  # sent as they are: a large exposition is not copied again
                await response.write(chunk)
        await response.write_eof()
        return response

    async def landing(self, request: web.Request) -> web.Response:
        snapshot = self._cache.snapshot
        held = snapshot.held
        rows = "\n".join(
            _row(state, held.get(state.target.key, 0), self._redact) for state in snapshot.targets
        )
        settings = "\n".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(self._redact(value))}</td></tr>"
            for name, value in self._settings()
        )
        reload = RELOAD_ENABLED if self._lifecycle else RELOAD_DISABLED
        page = PAGE.format(
            version=html.escape(__version__), reload=reload, rows=rows, settings=settings
        )
        return web.Response(text=page, content_type="text/html")

    async def healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready(self, request: web.Request) -> web.Response:
        """200 once /metrics holds a poll of every target it waits for (reads.awaited); it then
        stays 200."""
        targets = awaited(self._cache.snapshot.targets)
        self._ready = self._ready or (bool(targets) and all(state.polled for state in targets))
        if self._ready:
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text="Not ready: not every target has been polled yet.\n")


def _row(state: TargetState, workers: int, redact: Callable[[str], str]) -> str:
    target = state.target
    up = "up" if state.up else "down" if state.polled else "not yet polled"
    if state.not_ready:
        up = "up, not ready"
    success = _ago(state.last_success)
    error = state.last_error or ""
    # the last error, or why Vast cannot list the workers yet; key scrubbed before it is cut
    message = _shorten(redact(state.not_ready_message or state.last_error_message))
    cells = (target.kind, str(target.id), target.name, up, str(workers), success, error, message)
    css = ' class="down"' if state.polled and not state.up else ""
    body = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
    return f"<tr{css}>{body}</tr>"


def _shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """One line of at most `limit` characters (redact first: a cut key would not be found)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def _ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    return f"{stamp} ({time.time() - timestamp:.0f}s ago)"
