"""Driving a real exporter process and reading its metrics; shared by tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

API_KEY = "vk-test-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e"
START_LINE = re.compile(r'vastai-exporter started.*"?listen"?(?:=|: ")([^\s"]+)')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(samples: Samples, metric: str, /, **labels: str) -> dict[frozenset, float]:
    """The samples of one metric whose labels include `labels`."""
    wanted = set(labels.items())
    return {key[1]: v for key, v in samples.items() if key[0] == metric and wanted <= key[1]}


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The value of the one sample of `metric` whose labels include `labels`.

    AssertionError, naming what matched, when none or several do: a test asserts on the one
    series it means. In a `wait_for_metrics` predicate, that error means "not yet".
    """
    found = series(samples, metric, **labels)
    if len(found) != 1:
        matched = sorted(sorted(key) for key in found)[:5]
        raise AssertionError(f"{len(found)} samples of {metric} with {labels}, not 1: {matched}")
    (only,) = found.values()
    return only


class ScrapedExporter:
    """What a test reads of a running exporter over HTTP, however it runs (a child process, or
    in the test's own event loop): `base_url`, and how long to wait between two looks."""

    base_url: str

    def _step(self, loop: asyncio.AbstractEventLoop) -> float:
        return 0.05

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.base_url + path, **kwargs) as response,
        ):
            return response.status, await response.text(), dict(response.headers)

    async def scrape(self) -> str:
        status, text, _ = await self.get("/metrics")
        assert status == 200
        return text

    async def wait_for_metrics(
        self, predicate: Callable[[Samples], bool], timeout: float = 10.0
    ) -> Samples:
        """Scrape until `predicate` holds for the parsed samples. A predicate raising
        AssertionError does not hold yet (`value()` of a series not exported yet)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        samples: Samples = {}
        last_error: AssertionError | None = None
        while loop.time() < deadline:
            samples = parse_metrics(await self.scrape())
            try:
                if predicate(samples):
                    return samples
                last_error = None
            except AssertionError as error:
                last_error = error
            await asyncio.sleep(self._step(loop))
        names = sorted({name for name, _ in samples})
        why = f"; on it, the predicate said: {last_error}" if last_error else ""
        raise AssertionError(f"condition not met in {timeout}s; last scrape had {names}{why}")


class ExporterProcess(ScrapedExporter):
    """`python -m exporter` as a child process, with its stderr collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.lines: list[str] = []
        self.base_url = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, wait_started: bool = True, timeout: float = 10.0) -> ExporterProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "exporter",
            *self.args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        if wait_started:
            await self.wait_for_log(START_LINE, timeout)
            match = next(START_LINE.search(line) for line in self.lines if START_LINE.search(line))
            address = match.group(1).split(",")[0]
            self.base_url = f"http://{address}"
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_log(self, pattern: re.Pattern[str] | str, timeout: float = 10.0) -> str:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for line in self.lines:
                if regex.search(line):
                    return line
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no log line matching {regex.pattern!r}; log:\n{self.log}")

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signum)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return code

    async def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VAST_API_KEY"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env.update(extra)
    return env


def fast_config(api_url: str, **overrides: Any) -> dict[str, Any]:
    """A config polling quickly, so integration tests run in seconds."""
    config: dict[str, Any] = {
        "vast": {"api_url": api_url, "timeout": "1s"},
        "polling": {"interval": "300ms", "concurrency": 4, "stale_after": "5m"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config
