"""Periodic account reads, each declared once: the account listing, the instance list, billing.

A read is a subclass of AccountRead in its own module: its kind, its config section (which holds
`enabled` and `interval`), how it fetches, how its result is kept, how it is cleared when turned
off, and the View it adds to each snapshot (its metric families, and what it joins to the worker
rows). The Exporter (service.py) loops over the table ACCOUNT_READS: it runs each read as a
PeriodicReader, reported like a target (`kind`, `id="account"`), and knows nothing else of it.
Adding a read touches its own module, its config section and that table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .config import Config, Kind, Target
from .metrics import View

if TYPE_CHECKING:
    from .discovery import Shard
    from .vast import VastClient


class ReadContext(Protocol):
    """What the running exporter offers a read."""

    config: Config
    shard: Shard
    targets: list[Target]  # every configured and discovered target, of every shard
    endpoint_names: dict[int, str]  # endpoint id -> name, as the targets name it

    @property
    def client(self) -> VastClient: ...  # the client of the current config

    def polled_worker_ids(self) -> set[str]: ...

    async def first_poll_round(self) -> None: ...

    def targets_changed(self) -> None: ...


class AccountRead(ABC):
    """One periodic account read. Subclasses set `kind` and `section` and implement `read`."""

    kind: ClassVar[Kind]
    section: ClassVar[str]  # the Config attribute with its `enabled` and `interval`

    def __init__(self, context: ReadContext) -> None:
        self.context = context

    def schedule(self) -> tuple[bool, float]:
        settings = getattr(self.context.config, self.section)
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
