"""Shared fixtures: the fake Vast API and a real exporter process started through its CLI."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings as hypothesis_settings

from .fakevast import FakeVast
from .harness import API_KEY, ExporterProcess, base_env
from .inprocess import InProcessExporter, write_config
from .virtualtime import VirtualTimeLoop

# Property tests: a short run by default (CI included); HYPOTHESIS_PROFILE=long for the thorough
# one before a release (`HYPOTHESIS_PROFILE=long SOAK_SECONDS=10 pytest -m soak tests/`).
hypothesis_settings.register_profile("quick", max_examples=60)
hypothesis_settings.register_profile("long", max_examples=600)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


# The files that take longest, longest first: `--dist loadfile` hands files to the workers in
# collection order, so a long file collected last would run alone at the end (longest
# processing time first keeps the two workers busy to the end).
SLOW_FILES = (
    "test_prometheus_e2e.py",
    "test_docker.py",
    "test_exporter.py",
    "test_web.py",
    "test_supply.py",
    "test_rules.py",
    "test_alertmanager.py",
    "test_resilience.py",
    "test_discovery.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist (3.6 and newer) would hand out the files by their number of tests instead:
    keep the order above."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FILES.index(name) if name in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, stays


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
    """Tests marked `virtual_time` run on an event loop whose clock jumps over idle waits."""
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual_time": VirtualTimeLoop}
    return {"asyncio": asyncio.new_event_loop}


def soak_seconds(default: float) -> float:
    """How long a soak test runs: short by default (CI), longer with SOAK_SECONDS=N."""
    return float(os.environ.get("SOAK_SECONDS", default))


def require_binary(name: str, package: str = "prometheus") -> str:
    """A binary's path: skip the test without it, but fail under CI=true, where it must exist."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package '{package}')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true requires it")
        pytest.skip(message)
    return path


def promtool() -> str:
    return require_binary("promtool")


def alertmanager_binaries() -> tuple[str, str]:
    """Alertmanager (Debian names it prometheus-alertmanager) and its amtool."""
    package = "prometheus-alertmanager"
    return require_binary("prometheus-alertmanager", package), require_binary("amtool", package)


@pytest.fixture
async def fake_vast() -> AsyncIterator[FakeVast]:
    fake = await FakeVast(API_KEY).start()
    yield fake
    await fake.close()


@pytest.fixture
async def start_exporter(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start the exporter CLI with a config dict (or raw text) and extra args/env."""
    started: list[ExporterProcess] = []

    async def start(
        config: dict[str, Any] | str | None = None,
        *args: str,
        env: dict[str, str] | None = None,
        key: str | None = API_KEY,
        wait_started: bool = True,
    ) -> ExporterProcess:
        argv = ["--web.listen-address", "127.0.0.1:0", *args]
        if config is not None:
            path = tmp_path / "config.yaml"
            text = config if isinstance(config, str) else yaml.safe_dump(config)
            path.write_text(text)
            argv = ["--config.file", str(path), *argv]
        extra = dict(env or {})
        if key is not None:
            extra.setdefault("VAST_API_KEY", key)
        process = ExporterProcess(argv, base_env(**extra))
        started.append(process)
        return await process.start(wait_started=wait_started)

    yield start
    for process in started:
        process.kill()
        if process.proc is not None:
            await process.wait()


@pytest.fixture
async def run_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    """Like `start_exporter` (same arguments and API), but in this event loop: for everything
    that needs no process of its own (exit codes, signals, stderr)."""
    started: list[InProcessExporter] = []

    async def run(
        config: dict[str, Any] | str | None = None,
        *args: str,
        env: dict[str, str] | None = None,
        key: str | None = API_KEY,
    ) -> InProcessExporter:
        argv = ["--web.listen-address", "127.0.0.1:0", *args]
        if config is not None:
            path = tmp_path / "config.yaml"
            write_config(path, config)
            argv = ["--config.file", str(path), *argv]
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        if key is None:
            monkeypatch.delenv("VAST_API_KEY", raising=False)
        else:
            monkeypatch.setenv("VAST_API_KEY", key)  # where a reload finds the key too
        exporter = InProcessExporter(argv)
        started.append(exporter)
        return await exporter.start()

    yield run
    for exporter in started:
        await exporter.close()
