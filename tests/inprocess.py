"""The exporter in the test's own event loop: its real Exporter and HTTP app on loopback.

For behaviour that needs no process of its own (no flags, signals or exit codes), this is as
real as the CLI (the same client, scheduler, render cache and aiohttp app, over real HTTP) and
starts in milliseconds instead of a second of imports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from exporter.config import load_config
from exporter.server import ExporterApp
from exporter.service import Exporter

from .harness import API_KEY, Samples, parse_metrics


class InProcessExporter:
    """An Exporter with its HTTP app served on 127.0.0.1, and a client to read it."""

    def __init__(self, config_path: Path, api_key: str = API_KEY) -> None:
        self.config_path = config_path
        self.exporter = Exporter(load_config(config_path), api_key, str(config_path))
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> InProcessExporter:
        app = ExporterApp(self.exporter.cache, self.exporter.reload)
        self._runner = web.AppRunner(app.build(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._session = aiohttp.ClientSession()
        self.exporter.start()
        return self

    async def close(self) -> None:
        await self.exporter.close()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config))

    async def get(self, path: str) -> tuple[int, str]:
        assert self._session is not None
        async with self._session.get(self.url + path) as response:
            return response.status, await response.text()

    async def scrape(self) -> str:
        status, text = await self.get("/metrics")
        assert status == 200
        return text

    async def wait_for_metrics(
        self, predicate: Callable[[Samples], bool], timeout: float = 10.0
    ) -> Samples:
        """Scrape until `predicate` holds for the parsed samples."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        samples: Samples = {}
        while loop.time() < deadline:
            samples = parse_metrics(await self.scrape())
            if predicate(samples):
                return samples
            await asyncio.sleep(0.02)
        names = sorted({name for name, _ in samples})
        raise AssertionError(f"condition not met in {timeout}s; last scrape had {names}")
