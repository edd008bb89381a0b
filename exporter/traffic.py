"""What the exporter sends to Vast: every request counted, worker-list requests paced.

Vast rate-limits per key and path, and the worker-list host publishes no limit, so users need to
see how hard the exporter uses their key (`vastai_exporter_api_requests_total`) and to be able to
cap it (`polling.max_requests_per_second`). Both outlive a reload's new client.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from .clock import loop_time, wait_event


class RequestCounter:
    """Requests sent, by (host, path, code): host `api` or `console`, the path without query
    string, the HTTP status code or `timeout`/`connection` when none came back."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def count(self, host: str, path: str, code: str) -> None:
        self._counts[(host, path, code)] += 1

    def snapshot(self) -> tuple[tuple[tuple[str, str, str], int], ...]:
        return tuple(sorted(self._counts.items()))


# Tokens short of a whole one by float rounding only (0.05 s x 20/s can add up to
# 0.9999999999999998): the wait for the rest would be shorter than the clock's resolution, a timer
# due at once, and the acquire loop would spin without the clock moving.
_EPSILON = 1e-9


class TokenBucket:
    """At most `rate` requests a second on average, bursts of at most one second of tokens.

    A rate of 0 means no limit. Waiters queue in order (one waits for a token at a time), and a
    new rate applies at once, also to the wait in progress.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = loop_time) -> None:
        self._clock = clock
        self._rate = rate
        self._tokens = 1.0  # the first request goes at once; the rest follow at the rate
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        if rate == self._rate:
            return
        self._refill()
        self._rate = rate
        self._changed.set()
        self._changed = asyncio.Event()

    async def acquire(self) -> None:
        """Wait for a token (at once when there is no limit)."""
        if self._rate <= 0:
            return
        async with self._lock:
            while self._rate > 0:
                self._refill()
                if self._tokens >= 1 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                wait = (1 - self._tokens) / self._rate
                await wait_event(self._changed, wait)

    def _refill(self) -> None:
        now = self._clock()
        capacity = max(1.0, self._rate)  # one second of tokens, and room for one at least
        if self._rate > 0:
            self._tokens = min(capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
