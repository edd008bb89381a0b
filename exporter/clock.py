"""The exporter's one clock for intervals, backoff, spacing and staleness: the event loop's.

In production the loop's clock is `time.monotonic()`, so nothing changes; tests run the exporter
on an event loop with virtual time (`tests/virtualtime.py`), where waits take no real time and
intervals are exact. Wall-clock timestamps (`time.time()`) are for display and stay real.
"""

from __future__ import annotations

import asyncio
import time


def loop_time() -> float:
    """The running event loop's time; `time.monotonic()` outside a loop (the same clock)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
