"""End to end with a real Prometheus scraping the demo exporter every second.

With NO rule files loaded, every dashboard query returns data (issue 12: a user who imports only
the dashboards' JSON sees data; issue 25: all of them, the spend alert's threshold line included,
which falls back to the rules' default). With the rules loaded (and a per-endpoint override of
the spend threshold in a rule file of the user's own), every rule evaluates without error and the
threshold line is the recording rule's: the override for its endpoint, the default elsewhere.
Needs the `prometheus` binary (Debian's package): skipped without it, failed without it under
CI=true.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml

from .alerting import wait_ready
from .conftest import require_binary
from .harness import ExporterProcess, base_env
from .test_dashboards import DASHBOARDS as DASHBOARD_FILES
from .test_dashboards import (
    RULE_BACKED,
    RULES_FILE,
    all_expressions,
    data_panels,
    load,
    rule_backed,
    substitute,
)

QUERY_DEADLINE = 45.0  # seconds for every query to have data (rates need two scrapes)
SPEND_THRESHOLD = "endpoint:vastai_spend_threshold_dollars_per_hour"
# A user's own rule file next to vastai-rules.yaml, as the rules file's comments show it.
OVERRIDE_ENDPOINT, OVERRIDE_DOLLARS, DEFAULT_DOLLARS = "llama-70b", 250.0, 100.0
OVERRIDE_RULES = {
    "groups": [
        {
            "name": "vastai.thresholds",
            "rules": [
                {
                    "record": f"{SPEND_THRESHOLD}:override",
                    "expr": f"vector({OVERRIDE_DOLLARS:g})",
                    "labels": {"endpoint_name": OVERRIDE_ENDPOINT},
                }
            ],
        }
    ]
}

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
    start_prometheus, tmp_path: Path
) -> None:
    """Two Prometheus servers scraping one demo exporter at once (the wait is theirs: scrapes and
    evaluations every second): one without rule files, one with the rules and an override."""
    override = tmp_path / "thresholds.yaml"
    override.write_text(yaml.safe_dump(OVERRIDE_RULES))
    without_rules, with_rules = await asyncio.gather(
        every_panel_query_has_data_without_rules(await start_prometheus([])),
        every_rule_evaluates_and_rule_backed_queries_have_data(
            await start_prometheus([str(RULES_FILE), str(override)])
        ),
    )
    # the threshold line: the rules' default everywhere without them; with them the record,
    # which holds the override for its endpoint; for the same endpoints either way
    assert set(without_rules) == set(with_rules)
    assert set(without_rules.values()) == {DEFAULT_DOLLARS}
    assert with_rules == {
        name: OVERRIDE_DOLLARS if name == OVERRIDE_ENDPOINT else DEFAULT_DOLLARS
        for name in without_rules
    }
    assert OVERRIDE_ENDPOINT in with_rules and len(with_rules) >= 2


def panel_query_count() -> int:
    return sum(len(p["targets"]) for path in DASHBOARD_FILES for p in data_panels(load(path)))


async def threshold_line(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """endpoint_name -> value of the spend threshold line, as the panel queries it now."""
    (query,) = [substitute(e) for _, e in all_expressions() if rule_backed(e)]
    answer = await get_json(session, f"{base}/api/v1/query", query=query)
    lines = {s["metric"]["endpoint_name"]: float(s["value"][1]) for s in answer["data"]["result"]}
    assert len(lines) == len(answer["data"]["result"]), "one line per endpoint"
    return lines


async def every_panel_query_has_data_without_rules(base: str) -> dict[str, float]:
    """Every query, none exempt: the 105 panel queries (and the variables' queries). Keyed by
    position too: two panels of a dashboard may share a title."""
    queries = {
        f"{i}: {where}": substitute(expr) for i, (where, expr) in enumerate(all_expressions())
    }
    panels = panel_query_count()
    assert panels >= 105 and len(queries) == panels + 8, "4 query variables per dashboard"
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, base, lambda: "")
        rules = await get_json(session, f"{base}/api/v1/rules")
        assert rules["data"]["groups"] == [], "no rule file is loaded"
        missing = await queries_without_data(session, base, queries)
        assert not missing, f"queries without data after {QUERY_DEADLINE}s, no rules: {missing}"
        return await threshold_line(session, base)


async def every_rule_evaluates_and_rule_backed_queries_have_data(base: str) -> dict[str, float]:
    backed = {where: substitute(e) for where, e in all_expressions() if rule_backed(e)}
    assert len(backed) == len(RULE_BACKED)
    # the record itself, with the override (both groups evaluated): the panel's query has data
    # from its fallback before it does
    assert {f"{SPEND_THRESHOLD}:effective"} == RULE_BACKED
    override = f'{SPEND_THRESHOLD}:effective{{endpoint_name="{OVERRIDE_ENDPOINT}"}}'
    backed["the override"] = f"{override} == {OVERRIDE_DOLLARS:g}"
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, base, lambda: "")
        missing = await queries_without_data(session, base, backed)
        assert not missing, f"queries without data after {QUERY_DEADLINE}s, rules: {missing}"

        rules = await get_json(session, f"{base}/api/v1/rules")
        evaluated = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
        assert len(evaluated) >= 15
        bad = {rule["name"]: rule.get("lastError") for rule in evaluated if rule["health"] != "ok"}
        assert bad == {}
        return await threshold_line(session, base)
