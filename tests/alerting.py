"""Alert delivery, for real: a Prometheus with the project's rules and an Alertmanager with the
example config scrape and route over an exporter, and a webhook receiver on 127.0.0.1 records
every notification with the event loop's time of its arrival.

Shared by tests/test_alertmanager.py (what arrives) and benchmarks/bench_alert_delivery.py (how
long it takes). Only the timings are made short: scrapes and evaluations every second, the
alert's `for:` shortened, Alertmanager's grouping waits cut to (near) zero; every label,
annotation, route and inhibition is the files' own.
"""

from __future__ import annotations

import asyncio
import copy
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "deploy" / "prometheus" / "vastai-rules.yaml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
# Alertmanager's timings in the tests; every other setting is the example's.
FAST_ROUTE = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
READY_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rules_with_short_for(alerts: dict[str, str]) -> dict[str, Any]:
    """The rules file with the `for:` of the named alerts replaced (name -> duration) and
    nothing else changed: a test cannot wait 5 minutes."""
    rules = yaml.safe_load(RULES_FILE.read_text())
    found = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in alerts:
                rule["for"] = alerts[rule["alert"]]
                found.add(rule["alert"])
    assert found == set(alerts), f"not in the rules file: {set(alerts) - found}"
    return rules


def fast_route(route: dict[str, Any]) -> dict[str, Any]:
    """The route tree with the test's timings on every route, its matchers and receivers kept."""
    out = {**route, **FAST_ROUTE}
    if "routes" in route:
        out["routes"] = [fast_route(child) for child in route["routes"]]
    return out


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The example config, every receiver a webhook to `webhook_url`/<receiver name>."""
    config = copy.deepcopy(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()))
    config["route"] = fast_route(config["route"])
    for receiver in config["receivers"]:
        url = f"{webhook_url}/{receiver['name']}"
        receiver["webhook_configs"] = [{"url": url, "send_resolved": True}]
    return config


@dataclass
class Notification:
    at: float  # the event loop's time when it arrived
    receiver: str  # the path it was posted to: the name of the Alertmanager receiver
    body: dict[str, Any]

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in self.body["alerts"] if a["labels"].get("alertname") == alertname]


@dataclass
class WebhookReceiver:
    """Alertmanager's webhook_config target: records every POST."""

    notifications: list[Notification] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{receiver}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def _receive(self, request: web.Request) -> web.Response:
        at = asyncio.get_running_loop().time()
        body = await request.json()
        async with self._arrived:
            self.notifications.append(Notification(at, request.match_info["receiver"], body))
            self._arrived.notify_all()
        return web.Response(text="ok")

    async def wait_for(
        self, predicate: Callable[[Notification], bool], timeout: float
    ) -> Notification:
        """The first notification (already arrived or to come) that satisfies `predicate`."""

        def first() -> Notification | None:
            return next((n for n in self.notifications if predicate(n)), None)

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(first), timeout)
        found = first()
        assert found is not None
        return found

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class AlertingStack:
    """Prometheus (rules, alerting to the Alertmanager) and Alertmanager, as child processes."""

    def __init__(self, workdir: Path, prometheus: str, alertmanager: str) -> None:
        self.workdir = workdir
        self.binaries = {"prometheus": prometheus, "alertmanager": alertmanager}
        self.processes: list[asyncio.subprocess.Process] = []
        self.prometheus_url = ""
        self.alertmanager_url = ""

    async def start(self, scrape_target: str, rules: dict[str, Any], webhook_url: str) -> None:
        am_port, prom_port = free_port(), free_port()
        self.alertmanager_url = f"http://127.0.0.1:{am_port}"
        self.prometheus_url = f"http://127.0.0.1:{prom_port}"
        am_config = self._write("alertmanager.yml", alertmanager_config(webhook_url))
        await self._spawn(
            "alertmanager",
            f"--config.file={am_config}",
            f"--storage.path={self.workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",  # no gossip port: one instance, nothing on 0.0.0.0
        )
        rules_file = self._write("vastai-rules.yaml", rules)
        prom_config = self._write(
            "prometheus.yml",
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_file)],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {"job_name": "vastai", "static_configs": [{"targets": [scrape_target]}]}
                ],
            },
        )
        await self._spawn(
            "prometheus",
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        )
        async with aiohttp.ClientSession() as session:
            for url in (self.alertmanager_url, self.prometheus_url):
                await wait_ready(session, url, self.log)

    def _write(self, name: str, document: dict[str, Any]) -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    async def _spawn(self, name: str, *args: str) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes.append(
            await asyncio.create_subprocess_exec(
                self.binaries[name], *args, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        )
        log.close()

    def log(self) -> str:
        """The processes' own logs, for a failure message."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )

    async def stop(self) -> None:
        for process in reversed(self.processes):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def prometheus_has(base: str, query: str, timeout: float = READY_TIMEOUT) -> None:
    """Wait until a query has data in Prometheus (what the exporter showed has been scraped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            async with session.get(f"{base}/api/v1/query", params={"query": query}) as response:
                if (await response.json())["data"]["result"]:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"no data for {query} in {timeout}s")


async def wait_ready(session: aiohttp.ClientSession, base: str, log: Callable[[], str]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while loop.time() < deadline:
        try:
            async with session.get(f"{base}/-/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{base} did not become ready\n{log()}")
