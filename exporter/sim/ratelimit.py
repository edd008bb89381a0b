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


def default_limits() -> dict[str, RateLimit]:
    """A fresh RateLimit for each path of LIMITS."""
    return {path: RateLimit(interval) for path, interval in LIMITS.items()}
