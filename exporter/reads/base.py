"""The contract of a periodic account read, what the exporter offers it, and how it runs.

A read is one subclass of `AccountRead` in its own module of this package, and it is declared
there once: its kind, its config section (a settings dataclass with `enabled` and `interval`),
the paths it calls with their published rate limits, what the landing page and `--demo` show of
it; then how it fetches, keeps, clears and shows its result. The config file's schema, the
landing page, `--demo`, the client's pacing and the Exporter's schedule are built from the
table `ACCOUNT_READS` (`exporter/reads/__init__.py`).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from ..clock import loop_time
from ..metrics import View
from ..pacing import ApiPath
from ..scheduler import TargetState, attempt, next_delay, wait_replanned
from ..targets import Kind, Shard, Target

if TYPE_CHECKING:
    from ..vast import VastClient

log = logging.getLogger("exporter.reads")

T = TypeVar("T")


class ReadContext(Protocol):
    """What the running exporter offers a read."""

    config: Any  # the running exporter.config.Config, whose read sections are made from the reads
    shard: Shard
    targets: list[Target]  # every configured and discovered target, of every shard
    endpoint_names: dict[int, str]  # endpoint id -> name, as the targets name it

    @property
    def client(self) -> VastClient: ...  # the client of the current config

    def polled_worker_ids(self) -> set[str]: ...

    def worker_versions(self) -> dict[int, Counter[str | None]]:
        """Per endpoint id, the workers this replica exports by deployment_version_id (None:
        the worker sent none), each worker counted once."""
        ...

    async def first_poll_round(self) -> None: ...

    def targets_changed(self) -> None: ...


class AccountRead(ABC):
    """One periodic account read, declared once (see the module's docstring)."""

    kind: ClassVar[Kind]  # its targets' kind: vastai_target_up{kind=...,id="account"}
    section: ClassVar[str]  # its config section, and the Config attribute that holds it
    settings_type: ClassVar[type]  # that section: a settings dataclass (exporter/settings.py)
    paths: ClassVar[tuple[ApiPath, ...]]  # every path it calls, with its published limit
    demo: ClassVar[Mapping[str, Any]]  # its settings under --demo
    # Whether /-/ready and the first-round log line wait for its first read; a read whose
    # first read takes minutes by design (the offer searches, 10 a minute) says False.
    awaited: ClassVar[bool] = True

    def __init__(self, context: ReadContext) -> None:
        self.context = context

    @classmethod
    def describe(cls, settings: Any) -> str:
        """What the landing page says of it while it is enabled."""
        return f"on, every {settings.interval:g}s"

    def settings(self) -> Any:
        """Its section of the current config."""
        return getattr(self.context.config, self.section)

    def schedule(self) -> tuple[bool, float]:
        settings = self.settings()
        return settings.enabled, settings.interval

    def configure(self) -> None:  # noqa: B027 (an optional hook)
        """Take up a new config (after a reload); the schedule is the Exporter's business."""

    @abstractmethod
    async def read(self) -> Any:
        """One read; raises PollError (with a key-free message) on failure."""

    def apply(self, result: Any) -> None:  # noqa: B027 (an optional hook)
        """Keep a successful read's result."""

    @abstractmethod
    def clear(self) -> None:
        """Forget everything: the read was turned off."""

    def view(self, fresh: bool) -> View | None:
        """What the next snapshot shows of this read; `fresh`: the read succeeded within
        polling.stale_after (or has not failed yet)."""
        return None

    def found_targets(self) -> tuple[list[Target], dict[int, str]]:
        """Targets this read found to poll, and the endpoint names it knows by id (the
        listing's discovery); most reads find none."""
        return [], {}


class PeriodicReader(Generic[T]):
    """Runs one read every `interval` (after 429s, later), reporting like a target.

    Never reads sooner than `interval` after its previous read, even when its task is stopped
    and started again by reloads; a changed interval applies to the wait in progress.
    """

    def __init__(
        self,
        target: Target,
        read: Callable[[], Awaitable[T]],
        interval: float,
        on_result: Callable[[T], None],
        on_change: Callable[[], None],
    ) -> None:
        self.state = TargetState(target)
        self.interval = interval
        self._read = read
        self._on_result = on_result
        self._on_change = on_change
        self._last_read: float | None = None  # loop_time()
        self._replan = asyncio.Event()

    def set_interval(self, interval: float) -> None:
        self.interval = interval
        self._replan.set()
        self._replan = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self._wait_until_due()
            self._last_read = loop_time()
            self.state, result = await attempt(self.state, self._read)
            if result is not None:
                try:
                    self._on_result(result)
                except Exception:  # keep reading: the next result may apply cleanly
                    log.exception(
                        "applying an account read failed",
                        extra={"fields": {"kind": self.state.target.kind}},
                    )
            self._on_change()

    async def _wait_until_due(self) -> None:
        def remaining() -> float | None:
            if self._last_read is None:
                return None
            streak, retry_after = self.state.rate_limited_streak, self.state.retry_after
            # Jitter may only lengthen the wait: a read is never made more often.
            delay = max(self.interval, next_delay(self.interval, streak, retry_after))
            return self._last_read + delay - loop_time()

        await wait_replanned(remaining, lambda: self._replan)


def next_token(payload: Any) -> str | None:
    """The cursor to the next page of a keyset-paged answer (`next_token`, as
    show_instances.yaml and show_charges.yaml document it); None on the last page."""
    token = payload.get("next_token") if isinstance(payload, dict) else None
    return token if isinstance(token, str) and token else None


async def pages(
    client: VastClient,
    path: str,
    parse: Callable[[Any], T],
    params: Mapping[str, str],
    max_pages: int,
    is_empty: Callable[[T], bool],
) -> AsyncIterator[T]:
    """Each parsed page of a keyset-paged GET (`after_token` = the previous `next_token`), to
    the last page, an empty one, or `max_pages` (a cursor that never ends cannot loop forever).
    Pages are spaced by the client's pacing of `path`."""
    token: str | None = None

    def parse_page(payload: Any) -> tuple[T, str | None]:
        return parse(payload), next_token(payload)

    for _ in range(max_pages):
        query = dict(params) if token is None else {**params, "after_token": token}
        page, token = await client.get(path, parse_page, query)
        yield page
        if token is None or is_empty(page):
            return
