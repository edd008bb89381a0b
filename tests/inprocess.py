"""The exporter in the test's own event loop: its real Exporter and HTTP app on loopback.

For behaviour that needs no process of its own (no exit codes, signals or stderr), this is as
real as the CLI: the same flags, config loading, start-up code (`cli.start_serving`: client,
scheduler, render cache, aiohttp app, web config and TLS) over real HTTP, and its log lines
formatted and redacted as the CLI writes them to stderr. It starts in milliseconds instead of a
second of imports, and offers the API of `harness.ExporterProcess`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from exporter import sim
from exporter.cli import (
    DEMO_API_KEY,
    RunOptions,
    Serving,
    build_parser,
    demo_config,
    parse_listen_address,
    parse_shard,
    start_serving,
)
from exporter.config import load_config, resolve_api_key
from exporter.logs import LEVELS, JsonFormatter, LogfmtFormatter, RedactingFilter
from exporter.webconfig import LiveWebConfig

from .harness import ScrapedExporter
from .virtualtime import VirtualTimeLoop

VIRTUAL_STEP = 0.25  # seconds of virtual time between two looks


class _Lines(logging.Handler):
    """Collects formatted records, as the CLI's stderr handler would write them."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class InProcessExporter(ScrapedExporter):
    """The CLI's exporter and HTTP server, started from the same flags in this event loop."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.config_path: Path | None = None
        self.lines: list[str] = []
        self.base_url = ""
        self.serving: Serving | None = None
        self._cleanups: list[Callable[[], Awaitable[object]]] = []
        self._handler: _Lines | None = None
        self._root_level = logging.WARNING
        self._stopped = False

    @property
    def exporter(self) -> Any:
        assert self.serving is not None
        return self.serving.exporter

    @property
    def url(self) -> str:
        return self.base_url

    async def start(self) -> InProcessExporter:
        args = build_parser().parse_args(self.argv)
        listen = parse_listen_address(args.listen_address)
        shard = parse_shard(args.shard_index, args.shard_count)
        redactor = self._capture_logs(args.log_level, args.log_format)
        web_config = LiveWebConfig(args.web_config) if args.web_config else None
        if args.demo:
            runner, sim_url = await sim.start_simulator("127.0.0.1", 0)
            self._cleanups.append(runner.cleanup)
            config, api_key, config_path = demo_config(sim_url), DEMO_API_KEY, None
        else:
            config = load_config(args.config_file)
            api_key = resolve_api_key(config)
            redactor.add_secret(api_key)
            config_path = args.config_file
            self.config_path = Path(config_path)
        options = RunOptions(config_path, redactor, web_config, shard, args.enable_lifecycle)
        self.serving = await start_serving(
            config, api_key, listen, options, self._cleanups, sighup=False
        )
        address = self.serving.listen.split(",")[0]
        self.base_url = f"http://{address}"
        return self

    def _capture_logs(self, level: str, fmt: str) -> RedactingFilter:
        handler = _Lines(self.lines)
        handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
        redactor = RedactingFilter()
        handler.addFilter(redactor)
        handler.setLevel(LEVELS[level])
        root = logging.getLogger()
        self._root_level = root.level
        root.addHandler(handler)
        root.setLevel(min(LEVELS[level], root.level or logging.WARNING))
        self._handler = handler
        return redactor

    def write_config(self, config: dict[str, Any] | str) -> None:
        assert self.config_path is not None
        write_config(self.config_path, config)

    async def reload(self) -> str | None:
        """What SIGHUP does."""
        assert self.serving is not None
        return await self.serving.reload()

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """What SIGTERM/SIGINT does: shut down as the CLI's `serve` does; its exit code."""
        if not self._stopped:
            self._stopped = True
            logging.getLogger("exporter").info("shutting down")
            await asyncio.wait_for(self._close(), timeout)
        return 0

    async def _close(self) -> None:
        for cleanup in reversed(self._cleanups):
            try:
                await cleanup()
            except Exception:
                logging.getLogger("exporter").exception("error while shutting down")
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            logging.getLogger().setLevel(self._root_level)
            self._handler = None

    async def close(self) -> None:
        if not self._stopped:
            self._stopped = True
            await self._close()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_log(self, pattern: re.Pattern[str] | str, timeout: float = 10.0) -> str:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for line in self.lines:
                if regex.search(line):
                    return line
            if loop.time() >= deadline:
                raise AssertionError(f"no log line matching {regex.pattern!r}; log:\n{self.log}")
            await asyncio.sleep(self._step(loop))

    def _step(self, loop: asyncio.AbstractEventLoop) -> float:
        """How long to wait before looking again: on virtual time, a scrape costs real time
        but waiting does not, so look less often."""
        return VIRTUAL_STEP if isinstance(loop, VirtualTimeLoop) else 0.02


def write_config(path: Path, config: dict[str, Any] | str) -> None:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
