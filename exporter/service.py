"""The running exporter: the pieces that poll, render and serve, and configuration reloads.

A reload (SIGHUP or POST /-/reload) re-reads the config file and the key. A valid new config is
swapped in place: added targets are polled at once, removed ones lose their series, and new
settings apply from the next poll. An invalid one is logged and the running config stays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from .clock import loop_time, wait_event
from .config import Config, ConfigError, load_config, resolve_api_key
from .lifecycle import LifecycleTracker, endpoint_of
from .metrics import Exclusion, ReloadStatus, View
from .pacing import Pacing
from .parsing import Worker
from .reads import ACCOUNT_READS, AccountRead, PeriodicReader, awaited
from .render_loop import MetricsCache
from .scheduler import Scheduler, TargetState
from .targets import Kind, Shard, Target, merge_targets
from .traffic import RequestCounter
from .vast import WORKER_LISTS, VastClient, create_session

log = logging.getLogger("exporter")
FIRST_ROUND_WAIT = 60.0  # seconds the first instance read waits for the first poll round


class Exporter:
    """Owns the HTTP session, the Vast client, the scheduler and the render cache."""

    def __init__(
        self,
        config: Config,
        api_key: str,
        config_path: str | None = None,
        on_new_key: Callable[[str], None] = lambda key: None,
        shard: Shard | None = None,
    ) -> None:
        self.config = config
        self.shard = shard or Shard()
        self.targets: list[Target] = []  # configured and discovered, of every shard
        self.endpoint_names: dict[int, str] = {}
        # Each account read runs as a PeriodicReader, with its task while it is enabled.
        # Readers live as long as the exporter, so a reload that turns one off and on again
        # cannot make it read sooner than its interval; only their tasks come and go.
        self._readers: dict[Kind, PeriodicReader[Any]] = {}
        self._reader_tasks: dict[Kind, asyncio.Task[None]] = {}
        self._api_key = api_key
        self._config_path = config_path
        self._on_new_key = on_new_key
        self._session = create_session(config.polling.concurrency)
        self._requests = RequestCounter()
        paths = (*WORKER_LISTS, *(path for read in ACCOUNT_READS for path in read.paths))
        self._pacing = Pacing(paths, config.polling.max_requests_per_second)
        self._client = self._new_client(config, api_key, {})
        self._reads: dict[Kind, AccountRead] = {read.kind: read(self) for read in ACCOUNT_READS}
        self._old_sessions: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        polling = config.polling
        self.cache = MetricsCache(self.states, polling.stale_after, _refresh_every(config))
        self.cache.requests = self._requests.snapshot
        self.cache.views = self._views
        self.lifecycle = LifecycleTracker()
        self.cache.lifecycle = self.lifecycle.view
        self.cache.exclude = Exclusion(config.metrics.exclude)
        self.scheduler = Scheduler(
            self._fetch, polling, self._on_change, self.lifecycle.poll_succeeded
        )
        self._render_task: asyncio.Task[None] | None = None
        self._closing = False
        self._first_round_logged = False
        self._warned_split: list[int | None] = []

    def start(self) -> None:
        self._render_task = asyncio.create_task(self.cache.run(), name="render")
        self._configure_readers()
        self._set_targets()

    async def close(self) -> None:
        async with self._reload_lock:  # a reload in progress finishes first; none starts after
            self._closing = True
        await _ended([self._stop_reader(kind) for kind in list(self._reader_tasks)])
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
            if self._closing:
                return "shutting down"
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
            await self._apply(config, api_key)
            log.info("config reloaded", extra={"fields": {"targets": len(self.states())}})
            return None

    async def _apply(self, config: Config, api_key: str) -> None:
        old = self.config
        if api_key != self._api_key:
            self._on_new_key(api_key)
        if config.polling.concurrency != old.polling.concurrency:
            # A worker-group poll may make two requests in a row (the 404 fallback).
            self._retire_session(self._session, 2 * old.vast.timeout + 1)
            self._session = create_session(config.polling.concurrency)
        if (config.vast, config.polling.concurrency, api_key) != (
            old.vast,
            old.polling.concurrency,
            self._api_key,
        ):
            self._client = self._new_client(config, api_key, self._client.known_paths)
        self.config, self._api_key = config, api_key
        self._pacing.set_rate(config.polling.max_requests_per_second)
        self.scheduler.update_polling(config.polling)
        self.cache.exclude = Exclusion(config.metrics.exclude)
        self.cache.update(
            config.polling.stale_after, _refresh_every(config), ReloadStatus(True, time.time())
        )
        stopped = self._configure_readers()  # first: turning discovery off forgets the account
        self._set_targets()
        await _ended(stopped)

    # --- targets and discovery ----------------------------------------------------------------

    def _set_targets(self) -> None:
        """Poll this shard's share of the configured and discovered targets."""
        found: list[Target] = []
        listed: dict[int, str] = {}
        for read in self._reads.values():
            targets, names = read.found_targets()
            found += targets
            listed |= names
        self.targets = targets = merge_targets(self.config.targets, found, listed)
        # Endpoint names (for reads that know endpoints by id): as the targets name them,
        # else as the listing does.
        self.endpoint_names = listed | {
            t.endpoint_id: t.endpoint_name
            for t in targets
            if t.endpoint_id is not None and t.endpoint_name
        }
        self._warn_split_endpoints(found)
        polled = [t for t in targets if self.shard.owns(t.kind, t.id)]
        self.lifecycle.set_targets(polled, targets)
        self.scheduler.set_targets(polled)
        self.cache.mark_changed()

    targets_changed = _set_targets  # ReadContext: the listing found other targets

    def _warn_split_endpoints(self, discovered: list[Target]) -> None:
        """With sharding, a configured endpoint whose groups are discovered may be polled by
        one replica and its groups by others: its workers would then be exported twice."""
        if self.shard.count == 1:
            return
        configured = {t.id for t in self.config.targets if t.kind == Kind.ENDPOINT}
        split = sorted(
            {t.endpoint_id for t in discovered if t.kind == Kind.WORKER_GROUP} & configured
        )
        if split and split != self._warned_split:
            self._warned_split = split
            log.warning(
                "configured endpoints whose worker groups are discovered: with sharding their "
                "workers may be exported by two replicas; drop them from endpoints (discovery "
                "polls their worker groups) or run a single replica",
                extra={"fields": {"endpoints": ",".join(map(str, split))}},
            )

    def _configure_readers(self) -> list[asyncio.Task[None]]:
        """Start, retune or stop each account read as the config says; the stopped tasks, for
        the caller to await."""
        stopped = []
        for read in self._reads.values():
            read.configure()
            enabled, interval = read.schedule()
            if not enabled:
                if (task := self._stop_reader(read.kind)) is not None:
                    stopped.append(task)
                continue
            reader = self._readers.get(read.kind)
            if reader is None:
                reader = PeriodicReader(
                    Target(read.kind, "account"), read.read, interval, read.apply, self._on_change
                )
                self._readers[read.kind] = reader
            reader.set_interval(interval)
            if read.kind not in self._reader_tasks:
                self._reader_tasks[read.kind] = asyncio.create_task(reader.run(), name=read.kind)
        return stopped

    def _stop_reader(self, kind: Kind) -> asyncio.Task[None] | None:
        """Cancel a read's task (returned, to be awaited) and forget what it read."""
        task = self._reader_tasks.pop(kind, None)
        if task is not None:
            task.cancel()
        self._reads[kind].clear()
        return task

    def _views(self) -> tuple[View, ...]:
        """What the running account reads add to the next snapshot."""
        now, stale_after = loop_time(), self.config.polling.stale_after
        views = []
        for kind, read in self._reads.items():  # in ACCOUNT_READS order
            if kind not in self._reader_tasks:
                continue
            fresh = self._readers[kind].state.holds_workers(now, stale_after)
            view = read.view(fresh)
            if view is not None:
                views.append(view)
        return tuple(views)

    @property
    def client(self) -> VastClient:
        """The client of the current config (ReadContext)."""
        return self._client

    def polled_worker_ids(self) -> set[str]:
        """The workers this replica exports now: the instances worth reading."""
        now, stale_after = loop_time(), self.config.polling.stale_after
        return {
            worker_id
            for state in self.scheduler.states()
            if state.holds_workers(now, stale_after)
            for worker_id in state.worker_ids()
        }

    def worker_versions(self) -> dict[int, Counter[str | None]]:
        """Per endpoint id, this replica's exported workers by deployment_version_id (ReadContext),
        counted once each as the lifecycle counts them: from the endpoint's own target when it
        has one (in any shard), else from each of its worker groups; so the counts of replicas
        add up."""
        now, stale_after = loop_time(), self.config.polling.stale_after
        found: dict[int, Counter[str | None]] = {}
        for state in self.scheduler.states():
            endpoint = endpoint_of(state.target)
            if not endpoint or not self.lifecycle.counts(state.target):
                continue
            if state.holds_workers(now, stale_after):
                found.setdefault(int(endpoint), Counter()).update(w[3] for w in state.workers)
        return found

    async def first_poll_round(self) -> None:
        """Until every target has been polled once (at most a minute, for a slow discovery):
        before that, the instances worth reading are not known."""
        await wait_event(self.scheduler.first_round, FIRST_ROUND_WAIT)

    def _retire_session(self, session: aiohttp.ClientSession, grace: float) -> None:
        """Close a replaced session once the polls still using it have had time to finish."""

        async def close_later() -> None:
            try:
                await asyncio.sleep(grace)
            finally:
                await session.close()

        task = asyncio.create_task(close_later())
        self._old_sessions.add(task)
        task.add_done_callback(self._old_sessions.discard)

    def _new_client(
        self, config: Config, api_key: str, known_paths: dict[tuple[str, ...], str]
    ) -> VastClient:
        vast = config.vast
        return VastClient(
            self._session,
            vast.api_url,
            api_key,
            vast.timeout,
            vast.max_response_bytes,
            console_url=vast.console_url,
            known_paths=known_paths,
            counter=self._requests,
            pacing=self._pacing,
        )

    async def _fetch(self, target: Target) -> list[Worker]:
        return await self._client.fetch_workers(target)  # the client of the current config

    def states(self) -> tuple[TargetState, ...]:
        """Every target of this replica: the account reads first, then what is polled."""
        readers = tuple(self._readers[kind].state for kind in self._reader_tasks)
        return readers + self.scheduler.states()

    def settings(self) -> list[tuple[str, str]]:
        """What the landing page shows of the running config (no key: the config holds none)."""
        config = self.config
        vast, polling = config.vast, config.polling
        reads = []
        for read in ACCOUNT_READS:
            settings = getattr(config, read.section)
            reads.append((read.section, read.describe(settings) if settings.enabled else "off"))
        return [
            ("config file", config.source),
            ("API base URL", vast.api_url),
            ("console URL (account reads)", vast.console_url),
            ("request timeout", _seconds(vast.timeout)),
            ("poll interval", f"{_seconds(polling.interval)} (up to 5% jitter)"),
            ("concurrency", str(polling.concurrency)),
            ("stale after", _seconds(polling.stale_after)),
            *reads,
            ("shard", f"{self.shard.index} of {self.shard.count}"),
        ]

    def _on_change(self) -> None:
        """A poll or an account read landed, or the targets changed."""
        self.cache.mark_changed()
        if not self._first_round_logged:
            self._log_first_round()

    def _log_first_round(self) -> None:
        """One summary once every target, account reads and discovered ones included, has been
        polled (success or failure), as /-/ready turns 200 (the targets reads.awaited keeps)."""
        states = awaited(self.states())
        if not states or not all(state.polled for state in states):
            return
        self._first_round_logged = True
        up = sum(state.up for state in states)
        fields = {
            "targets": len(states),
            "targets_up": up,
            "targets_down": len(states) - up,
            # An endpoint's workers are its groups' workers: each counted once.
            "workers": len({i for state in states if state.up for i in state.worker_ids()}),
        }
        log.info("first poll round done", extra={"fields": fields})


async def _ended(tasks: list[asyncio.Task[None] | None]) -> None:
    """Wait for cancelled tasks to end (a cancel is only a request)."""
    await asyncio.gather(*(task for task in tasks if task is not None), return_exceptions=True)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _refresh_every(config: Config) -> float:
    return min(config.polling.interval, config.polling.stale_after)
