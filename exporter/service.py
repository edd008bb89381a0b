"""The running exporter: the pieces that poll, render and serve, and configuration reloads.

A reload (SIGHUP or POST /-/reload) re-reads the config file and the key. A valid new config is
swapped in place: added targets are polled at once, removed ones lose their series, and new
settings apply from the next poll. An invalid one is logged and the running config stays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from .config import Config, ConfigError, Target, load_config, resolve_api_key
from .exposition import MetricsCache
from .metrics import ReloadStatus, TargetState
from .parsing import Worker
from .scheduler import Scheduler
from .vast import VastClient, create_session

log = logging.getLogger("exporter")


class Exporter:
    """Owns the HTTP session, the Vast client, the scheduler and the render cache."""

    def __init__(
        self,
        config: Config,
        api_key: str,
        config_path: str | None = None,
        on_new_key: Callable[[str], None] = lambda key: None,
    ) -> None:
        self.config = config
        self._api_key = api_key
        self._config_path = config_path
        self._on_new_key = on_new_key
        self._session = create_session(config.polling.concurrency)
        self._client = self._new_client(config, api_key)
        self._old_sessions: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        polling = config.polling
        self.cache = MetricsCache(self._states, polling.stale_after, _refresh_every(config))
        self.scheduler = Scheduler(self._fetch, polling, self.cache.mark_changed)
        self._render_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._render_task = asyncio.create_task(self.cache.run(), name="render")
        self.scheduler.set_targets(self.config.targets)

    async def close(self) -> None:
        await self.scheduler.stop()
        if self._render_task is not None:
            self._render_task.cancel()
            await asyncio.gather(self._render_task, return_exceptions=True)
        for task in self._old_sessions:
            task.cancel()  # closes its session at once
        await asyncio.gather(*self._old_sessions, return_exceptions=True)
        await self._session.close()

    async def reload(self) -> str | None:
        """Re-read the config file; None on success, else the reason (the old config stays)."""
        async with self._reload_lock:
            if self._config_path is None:
                log.info("reload: nothing to re-read in demo mode")
                return None
            try:
                config = load_config(self._config_path)
                api_key = resolve_api_key(config)
            except ConfigError as exc:
                log.error(
                    "reload failed; keeping the running config",
                    extra={"fields": {"error": str(exc)}},
                )
                self.cache.update(
                    self.config.polling.stale_after,
                    _refresh_every(self.config),
                    ReloadStatus(False, self.cache.reload.success_timestamp),
                )
                return str(exc)
            self._apply(config, api_key)
            log.info("config reloaded", extra={"fields": {"targets": len(config.targets)}})
            return None

    def _apply(self, config: Config, api_key: str) -> None:
        old = self.config
        if api_key != self._api_key:
            self._on_new_key(api_key)
        if config.polling.concurrency != old.polling.concurrency:
            self._retire_session(self._session, old.vast.timeout)
            self._session = create_session(config.polling.concurrency)
        if (config.vast, config.polling.concurrency, api_key) != (
            old.vast,
            old.polling.concurrency,
            self._api_key,
        ):
            self._client = self._new_client(config, api_key)
        self.config, self._api_key = config, api_key
        self.scheduler.update_polling(config.polling)
        self.cache.update(
            config.polling.stale_after, _refresh_every(config), ReloadStatus(True, time.time())
        )
        self.scheduler.set_targets(config.targets)

    def _retire_session(self, session: aiohttp.ClientSession, timeout: float) -> None:
        """Close a replaced session once the polls still using it have had time to finish."""

        async def close_later() -> None:
            try:
                await asyncio.sleep(timeout + 1)
            finally:
                await session.close()

        task = asyncio.create_task(close_later())
        self._old_sessions.add(task)
        task.add_done_callback(self._old_sessions.discard)

    def _new_client(self, config: Config, api_key: str) -> VastClient:
        vast = config.vast
        return VastClient(
            self._session, vast.api_url, api_key, vast.timeout, vast.max_response_bytes
        )

    async def _fetch(self, target: Target) -> list[Worker]:
        return await self._client.fetch_workers(target)  # the client of the current config

    def _states(self) -> tuple[TargetState, ...]:
        return self.scheduler.states()


def _refresh_every(config: Config) -> float:
    return min(config.polling.interval, config.polling.stale_after)
