"""End to end with a real Prometheus: the demo exporter scraped every second, rules loaded.

Every dashboard query must return data and every rule must evaluate without error. Needs the
`prometheus` binary (Debian's package): skipped without it, failed without it under CI=true.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from .conftest import require_binary
from .harness import ExporterProcess, base_env
from .test_dashboards import RULES_FILE, all_expressions, substitute

QUERY_DEADLINE = 45.0  # seconds for every query to have data (rates need two scrapes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def prometheus_url(tmp_path: Path) -> AsyncIterator[str]:
    binary = require_binary("prometheus")
    exporter = await ExporterProcess(
        ["--demo", "--web.listen-address", "127.0.0.1:0"], base_env()
    ).start()
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "vastai",
                "static_configs": [{"targets": [exporter.base_url.removeprefix("http://")]}],
            }
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    prometheus = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        prometheus.terminate()
        await asyncio.wait_for(prometheus.wait(), 10)
        assert await exporter.stop() == 0


async def get_json(session: aiohttp.ClientSession, url: str, **params: str) -> dict:
    async with session.get(url, params=params) as response:
        return await response.json()


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with session.get(f"{base}/-/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("Prometheus did not become ready")


async def test_every_panel_query_has_data_and_every_rule_evaluates(prometheus_url: str) -> None:
    queries = {where: substitute(expr) for where, expr in all_expressions()}
    assert len(queries) >= 20
    loop = asyncio.get_running_loop()
    deadline = loop.time() + QUERY_DEADLINE
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, prometheus_url)
        missing = dict(queries)
        while missing and loop.time() < deadline:
            for where, query in list(missing.items()):
                answer = await get_json(session, f"{prometheus_url}/api/v1/query", query=query)
                assert answer["status"] == "success", (where, query, answer)
                if answer["data"]["result"]:
                    del missing[where]
            await asyncio.sleep(1)
        assert not missing, f"queries without data after {QUERY_DEADLINE}s: {missing}"

        rules = await get_json(session, f"{prometheus_url}/api/v1/rules")
        evaluated = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
        assert len(evaluated) >= 15
        bad = {rule["name"]: rule.get("lastError") for rule in evaluated if rule["health"] != "ok"}
        assert bad == {}
