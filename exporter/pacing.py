"""How fast the exporter may call each of Vast's paths, declared once per path.

Vast rate-limits per key and path. Its OpenAPI (vast-ai/docs `api-reference/openapi/yaml/`)
publishes an `x-rate-limit` threshold for most console calls (show_instances.yaml and
show_charges.yaml 1.0, show_autogroup.yaml 2.0, show_endpoints.yaml and show_deployments.yaml
3.0), read as seconds between two calls of one path, and answers a faster call with HTTP 429
("API requests too frequent endpoint threshold=1.0"). So every path is declared once, with its
spacing (`ApiPath`), and the Vast client asks this module before each request:

- a paced path's requests are at least `spacing` apart (from the end of one to the start of the
  next), across reads and reloads;
- after a 429 on a paced path, none is sent until its Retry-After, or else the spacing doubled
  per 429 in a row (at most MAX_HOLD_SPACINGS spacings);
- a path declared with `{id}`-style segments (show_deployment.yaml's `/api/v0/deployment/{id}/`)
  is paced as one path, whatever the ids: every request it matches shares its spacing and its
  429 hold. Vast's threshold is declared per path template and its 429 names the threshold of the
  "endpoint" (the route), not of an id, so N deployments' versions are N calls `spacing` apart;
  requests are counted under the template too, so ids never become label values;
- the worker lists (run.vast.ai) publish no limit: they share one token bucket over all
  targets (`polling.max_requests_per_second`), and a 429 backs off per target (the scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from .clock import loop_time
from .traffic import TokenBucket

MAX_HOLD_SPACINGS = 10
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class ApiPath:
    """One path of Vast's API that the exporter calls, and how fast it may."""

    path: str  # `{name}` segments stand for ids: "/api/v0/deployment/{id}/versions/"
    spacing: float  # seconds between two requests at least; 0: not paced per path
    source: str  # where the path and its limit are published
    host: str = "console"  # "api": run.vast.ai's worker lists, paced by the shared bucket
    method: str = "GET"  # how the exporter calls it ("POST": the offer search)

    def format(self, **ids: int | str) -> str:
        """The path of one request, its `{name}` segments filled in."""
        return self.path.format(**ids)


_SEGMENT = re.compile(r"\\\{\w+\\\}")  # a `{name}` segment, once re.escape()d


def _template(path: str) -> re.Pattern[str] | None:
    """The regex of the requests a declared path stands for; None for a plain path."""
    if "{" not in path:
        return None
    return re.compile(_SEGMENT.sub("[^/]+", re.escape(path)))


class PathPacer:
    """The requests of one path: one at a time, `spacing` apart, held after a 429."""

    def __init__(self, spacing: float, clock: Callable[[], float] = loop_time) -> None:
        self.spacing = spacing
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last_end: float | None = None
        self._held_until = 0.0
        self._streak = 0  # 429s in a row

    def due(self) -> float:
        """When the next request may start (the clock's time)."""
        due = self._held_until
        if self._last_end is not None:
            due = max(due, self._last_end + self.spacing)
        return due

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for this path's turn, and hold it while the request runs."""
        async with self._lock:
            while (wait := self.due() - self._clock()) > 0:
                await asyncio.sleep(wait)  # asked again: a reload may change the spacing
            try:
                yield
            finally:
                self._last_end = self._clock()

    def answered(self, status: int, retry_after: float | None) -> None:
        if status != 429:
            self._streak = 0
            return
        self._streak += 1
        if retry_after is not None:
            hold = min(retry_after, MAX_RETRY_AFTER)
        else:
            backoff = 2 ** min(self._streak - 1, MAX_HOLD_SPACINGS)
            hold = self.spacing * min(backoff, MAX_HOLD_SPACINGS)
        self._held_until = max(self._held_until, self._clock() + hold)


class Pacing:
    """Every path's pacing; lives as long as the exporter, so a reload's new client keeps it."""

    def __init__(
        self,
        paths: Iterable[ApiPath],
        worker_list_rate: float = 0.0,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        paths = tuple(paths)
        self.bucket = TokenBucket(worker_list_rate, clock)
        self._bucketed = frozenset(p.path for p in paths if p.host == "api")
        self._pacers = {p.path: PathPacer(p.spacing, clock) for p in paths if p.host != "api"}
        self._templates = tuple(
            (regex, p.path) for p in paths if (regex := _template(p.path)) is not None
        )

    def route(self, path: str) -> str:
        """The declared path a request's path is paced and counted as: itself, or the
        template (`{id}` segments) it matches."""
        if path in self._pacers or path in self._bucketed:
            return path
        for regex, template in self._templates:
            if regex.fullmatch(path):
                return template
        return path

    def set_rate(self, rate: float) -> None:
        """polling.max_requests_per_second, for the worker lists."""
        self.bucket.set_rate(rate)

    def set_spacing(self, path: str, spacing: float) -> None:
        """A setting that spaces a path further than Vast asks (instances.page_interval)."""
        self._pacers[path].spacing = spacing

    @contextlib.asynccontextmanager
    async def request(self, path: str) -> AsyncIterator[None]:
        """Wait until a request to `path` may go; a paced path is held until it ends."""
        pacer = self._pacers.get(self.route(path))
        if path in self._bucketed:
            await self.bucket.acquire()
        if pacer is None:
            yield
            return
        async with pacer.turn():
            yield

    def answered(self, path: str, status: int, retry_after: float | None) -> None:
        """What the request to `path` got: a 429 holds a paced path."""
        pacer = self._pacers.get(self.route(path))
        if pacer is not None:
            pacer.answered(status, retry_after)
