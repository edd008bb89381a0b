"""The render loop: when to take a snapshot and render it, so that scrapes only copy bytes.

Rendering itself is `exposition`; this module decides when it happens (after each burst of poll
results, debounced and spaced, at least every `refresh_every`) and where (the one render
thread, off the event loop), and keeps the last Exposition for the HTTP server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .clock import loop_time, wait_event
from .exposition import RENDERER, Exposition, build_exposition
from .lifecycle import EndpointLifecycle
from .metrics import NOTHING_EXCLUDED, ReloadStatus, View, build_snapshot
from .reads import awaited
from .scheduler import TargetState

log = logging.getLogger(__name__)


def _build(*args: Any) -> Exposition:
    """build_snapshot(*args), rendered."""
    return build_exposition(build_snapshot(*args))


class MetricsCache:
    """Holds the last rendered exposition and re-renders it, off the loop, when polls change.

    A burst of poll results becomes one render: after a change the cache waits `debounce`, and
    never starts a render sooner than RENDER_GAP_FACTOR x the last render's duration after the
    previous one ended, so rendering takes at most a fifth of a core however often polls land. A
    periodic re-render also expires the workers of targets failing for `stale_after`. The first
    render after start-up waits for the first poll round (FIRST_ROUND_HOLD at most).
    """

    RENDER_GAP_FACTOR = 4.0
    # At start-up, a render waits (this long at most) for every target's first poll: renders of
    # a half-polled fleet would only slow the round down (they share the GIL with the loop).
    FIRST_ROUND_HOLD = 2.0

    def __init__(
        self,
        states: Callable[[], Iterable[TargetState]],
        stale_after: float,
        refresh_every: float,
        debounce: float = 0.05,
    ) -> None:
        self._states = states
        self._stale_after = stale_after
        self._refresh_every = refresh_every
        self.reload = ReloadStatus(successful=True, success_timestamp=time.time())
        self.views: Callable[[], tuple[View, ...]] = tuple  # what the account reads add
        self.requests: Callable[[], tuple[tuple[tuple[str, str, str], int], ...]] = tuple
        self.web_config_successful = True
        self.lifecycle: Callable[[], tuple[EndpointLifecycle, ...]] = tuple
        self.exclude = NOTHING_EXCLUDED  # metrics.exclude, set by the exporter
        self._debounce = debounce
        self._changed = asyncio.Event()
        self._last_render_seconds = 0.0
        self._last_render_end = 0.0
        self._first_round_done = False
        self.snapshot = build_snapshot((), stale_after, loop_time())
        self.exposition = build_exposition(self.snapshot)

    def mark_changed(self) -> None:
        self._changed.set()

    def update(self, stale_after: float, refresh_every: float, reload: ReloadStatus) -> None:
        """Settings and reload outcome from a configuration reload; re-render soon."""
        self._stale_after, self._refresh_every, self.reload = stale_after, refresh_every, reload
        self.mark_changed()

    async def refresh(self) -> None:
        """Gather what the snapshot needs (cheap, on the loop), then merge and render it on the
        render thread: merging 10,000 workers takes tens of ms the loop need not spend."""
        started = loop_time()
        build = functools.partial(
            _build,
            self._states(),
            self._stale_after,
            loop_time(),
            self.reload,
            self.views(),
            self.requests(),
            self.web_config_successful,
            self.lifecycle(),
            self.exclude,
        )
        loop = asyncio.get_running_loop()
        exposition = await loop.run_in_executor(RENDERER, build)
        self.snapshot, self.exposition = exposition.snapshot, exposition
        self._last_render_end = loop_time()
        self._last_render_seconds = self._last_render_end - started

    async def _hold_for_first_round(self) -> None:
        """Until every target the first round waits for (reads.awaited) has been polled once,
        or FIRST_ROUND_HOLD has passed."""
        deadline = loop_time() + self.FIRST_ROUND_HOLD
        while (left := deadline - loop_time()) > 0:
            states = awaited(self._states())
            if states and all(state.polled for state in states):
                break
            self._changed.clear()
            await wait_event(self._changed, left)
        self._first_round_done = True

    async def run(self) -> None:
        """Re-render after each burst of poll results, and at least every refresh_every."""
        while True:
            if await wait_event(self._changed, self._refresh_every):
                # Wait out the debounce, and the rest of the gap after the previous render.
                gap = self.RENDER_GAP_FACTOR * self._last_render_seconds
                earliest = self._last_render_end + gap - loop_time()
                await asyncio.sleep(max(self._debounce, earliest))
                if not self._first_round_done:
                    await self._hold_for_first_round()
            self._changed.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("rendering /metrics failed; serving the previous exposition")
