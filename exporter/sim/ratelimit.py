"""Vast's rate limits as the simulated API enforces them, each path's limit declared once.

Vast publishes an `x-rate-limit` threshold per path (vast-ai/docs `api-reference/openapi/yaml/`),
enforced per key: a faster call gets a plain-text HTTP 429 with no Retry-After, whose text names
the threshold ("API requests too frequent endpoint threshold=1.0").
"""

from __future__ import annotations

from collections.abc import Callable

from ..clock import loop_time
from . import paths

# Route (a path, or a template with `{id}`: every id shares its limit) -> seconds between two
# calls of one key, as the simulated API enforces them by default.
LIMITS: dict[str, float] = {
    paths.INSTANCES: 1.0,  # show_instances.yaml, x-rate-limit threshold 1.0
    paths.CHARGES: 1.0,  # show_charges.yaml, x-rate-limit threshold 1.0
    # show_deployments.yaml and show_deployment.yaml, x-rate-limit threshold 3.0; the versions
    # publish none and are taken to share their deployment's.
    paths.DEPLOYMENTS: 3.0,
    paths.DEPLOYMENTS_NO_SLASH: 3.0,
    paths.DEPLOYMENT: 3.0,
    paths.DEPLOYMENT_VERSIONS: 3.0,
}
# Path -> (requests, seconds): at most that many in any such window, per key.
WINDOWS: dict[str, tuple[int, float]] = {
    paths.BUNDLES: (10, 60.0),  # search_offers.yaml x-rate-limit: 10 requests per minute per IP
}


def too_fast(interval: float) -> str:
    """The body of Vast's 429 for a path limited to one call per `interval` seconds."""
    return f"API requests too frequent endpoint threshold={interval}"


class RateLimit:
    """One request per `interval` seconds per key, as Vast's x-rate-limit threshold."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = loop_time):
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}

    def allows(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True


class WindowLimit:
    """At most `count` requests in any `per` seconds per key, as search_offers.yaml publishes
    its limit (10 a minute); its 429 names the average spacing that keeps within it."""

    def __init__(self, count: int, per: float, clock: Callable[[], float] = loop_time):
        self.count = count
        self.per = per
        self.interval = per / count
        self._clock = clock
        self._recent: dict[str, list[float]] = {}

    def allows(self, key: str) -> bool:
        now = self._clock()
        recent = [at for at in self._recent.get(key, []) if now - at < self.per]
        allowed = len(recent) < self.count
        if allowed:
            recent.append(now)
        self._recent[key] = recent
        return allowed


Limit = RateLimit | WindowLimit


def default_limits() -> dict[str, Limit]:
    """A fresh limit for each path of LIMITS and WINDOWS."""
    limits: dict[str, Limit] = {path: RateLimit(interval) for path, interval in LIMITS.items()}
    limits.update((path, WindowLimit(*window)) for path, window in WINDOWS.items())
    return limits
