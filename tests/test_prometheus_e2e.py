"""End to end with a real Prometheus scraping the demo exporter every second.

With NO rule files loaded, every dashboard query returns data (issue 12: a user who imports only
the dashboards' JSON sees data), except the series listed in test_dashboards.RULE_BACKED, which
exist only with the rules. With the rules loaded, every rule evaluates without error and those
rule-backed queries return data too. Needs the `prometheus` binary (Debian's package): skipped
without it, failed without it under CI=true.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml

from .conftest import require_binary
from .harness import ExporterProcess, base_env
from .test_dashboards import RULES_FILE, all_expressions, rule_backed, substitute

QUERY_DEADLINE = 45.0  # seconds for every query to have data (rates need two scrapes)

StartPrometheus = Callable[[list[str]], Awaitable[str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def start_prometheus(tmp_path: Path) -> AsyncIterator[StartPrometheus]:
    """A demo exporter, and a factory of Prometheus servers scraping it with given rule files."""
    binary = require_binary("prometheus")
    exporter = await ExporterProcess(
        ["--demo", "--web.listen-address", "127.0.0.1:0"], base_env()
    ).start()
    servers: list[asyncio.subprocess.Process] = []

    async def start(rule_files: list[str]) -> str:
        port = free_port()
        workdir = tmp_path / f"prometheus-{len(servers)}"
        workdir.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files,
            "scrape_configs": [
                {
                    "job_name": "vastai",
                    "static_configs": [{"targets": [exporter.base_url.removeprefix("http://")]}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        servers.append(
            await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for server in servers:
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)
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


async def queries_without_data(
    session: aiohttp.ClientSession, base: str, queries: dict[str, str]
) -> dict[str, str]:
    """Ask until every query has data or the deadline passes; the ones that never had data."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + QUERY_DEADLINE
    missing = dict(queries)
    while missing and loop.time() < deadline:
        for where, query in list(missing.items()):
            answer = await get_json(session, f"{base}/api/v1/query", query=query)
            assert answer["status"] == "success", (where, query, answer)
            if answer["data"]["result"]:
                del missing[where]
        if missing:
            await asyncio.sleep(1)
    return missing


async def test_panel_queries_have_data_without_rules_and_every_rule_evaluates(
    start_prometheus,
) -> None:
    """Two Prometheus servers scraping one demo exporter at once (the wait is theirs: scrapes and
    evaluations every second): one without rule files, one with the rules."""
    await asyncio.gather(
        every_panel_query_has_data_without_rules(await start_prometheus([])),
        every_rule_evaluates_and_rule_backed_queries_have_data(
            await start_prometheus([str(RULES_FILE)])
        ),
    )


async def every_panel_query_has_data_without_rules(base: str) -> None:
    queries = {where: substitute(expr) for where, expr in all_expressions()}
    own = {where: q for where, q in queries.items() if not rule_backed(q)}
    assert len(own) >= 20
    assert len(queries) - len(own) <= 1, "rule-backed queries are exceptions"
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        rules = await get_json(session, f"{base}/api/v1/rules")
        assert rules["data"]["groups"] == [], "no rule file is loaded"
        missing = await queries_without_data(session, base, own)
    assert not missing, f"queries without data after {QUERY_DEADLINE}s, no rules: {missing}"


async def every_rule_evaluates_and_rule_backed_queries_have_data(base: str) -> None:
    backed = {where: substitute(e) for where, e in all_expressions() if rule_backed(e)}
    assert backed
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        missing = await queries_without_data(session, base, backed)
        assert not missing, f"queries without data after {QUERY_DEADLINE}s, rules: {missing}"

        rules = await get_json(session, f"{base}/api/v1/rules")
        evaluated = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
        assert len(evaluated) >= 15
        bad = {rule["name"]: rule.get("lastError") for rule in evaluated if rule["health"] != "ok"}
        assert bad == {}
