"""Shared fixtures: the fake Vast API and a real exporter process started through its CLI."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .fakevast import FakeVast
from .harness import API_KEY, ExporterProcess, base_env


def promtool() -> str | None:
    """promtool's path; in CI a missing promtool is a failure, never a skip."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed, and CI=true requires it")
        pytest.skip("promtool is not installed")
    return path


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
