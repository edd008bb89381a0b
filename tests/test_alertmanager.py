"""Alerts delivered (issue 25): Prometheus with the project's rules and Alertmanager with the
example config (deploy/alertmanager/alertmanager.yml), over the exporter polling the fake Vast
API, notify a webhook receiver on 127.0.0.1.

A worker group made to fail produces VastaiTargetDown at the receiver the example routes warnings
to, with the target's labels (its endpoint's from the account listing) and the rule's summary,
description and runbook_url, then a resolved notification once the group answers again. The only
changes to the files are timings: VastaiTargetDown's `for:` is 1s instead of 5m, scrapes and
evaluations run every second, Alertmanager's group_wait is 0s and group_interval 1s.

Needs `prometheus` and Debian's `prometheus-alertmanager` (with `amtool`): skipped without them,
failed without them under CI=true.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .alerting import (
    ALERTMANAGER_CONFIG,
    RULES_FILE,
    AlertingStack,
    Notification,
    WebhookReceiver,
    alertmanager_config,
    prometheus_has,
    rules_with_short_for,
)
from .conftest import alertmanager_binaries, require_binary
from .fakevast import endpoint, failure, worker, worker_group, workers
from .harness import fast_config, series
from .test_runbooks import RUNBOOK_BASE

ALERT = "VastaiTargetDown"
SHORT_FOR = "1s"
DELIVERY_TIMEOUT = 20.0  # seconds; the measured delivery takes a few
ENDPOINT_ID, ENDPOINT_NAME, GROUP_ID = 10, "chat", 20


def amtool_check(amtool: str, path: Path) -> str:
    proc = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_example_config_is_valid():
    _, amtool = alertmanager_binaries()
    out = amtool_check(amtool, ALERTMANAGER_CONFIG)
    assert "SUCCESS" in out
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    severities = {m for r in config["route"]["routes"] for m in r["matchers"]}
    assert severities == {'severity="critical"', 'severity="info"'}, "warnings take the default"
    assert {"alertname", "endpoint_name", "kind", "id"} <= set(config["route"]["group_by"])
    rules = yaml.safe_load(RULES_FILE.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for inhibit in config["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            names = [m for m in inhibit[side] if m.startswith("alertname=")]
            assert names, f"{side} names its alerts"
            pattern = names[0].split("=", 1)[1].lstrip("~").strip('"')
            assert set(pattern.split("|")) <= alerts, pattern


def test_the_commented_integrations_are_valid_too(tmp_path):
    """The receivers' commented examples, uncommented into the first receiver, pass amtool."""
    _, amtool = alertmanager_binaries()
    head, receivers = ALERTMANAGER_CONFIG.read_text().split("\nreceivers:\n")
    example = [line[6:] for line in receivers.splitlines() if line.startswith("  #   ")]
    assert any("slack_configs:" in line for line in example)
    names = [line for line in receivers.splitlines() if line.startswith("  - name:")]
    body = "\n".join("    " + line for line in example)
    text = f"{head}\nreceivers:\n{names[0]}\n{body}\n" + "\n".join(names[1:]) + "\n"
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    config = yaml.safe_load(text)
    integrations = {k for k in config["receivers"][0] if k.endswith("_configs")}
    assert integrations == {"slack_configs", "webhook_configs", "pagerduty_configs"}
    amtool_check(amtool, path)


def test_the_test_changes_only_timings():
    """What the delivery test runs: the rules file with one `for:` shorter, the example
    config with short grouping waits and webhooks as receivers."""
    original = yaml.safe_load(RULES_FILE.read_text())
    changed = rules_with_short_for({ALERT: SHORT_FOR})
    (rule,) = [r for g in changed["groups"] for r in g["rules"] if r.get("alert") == ALERT]
    assert rule["for"] == SHORT_FOR
    rule["for"] = "5m"
    assert changed == original
    example = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config = alertmanager_config("http://127.0.0.1:1")
    assert config["inhibit_rules"] == example["inhibit_rules"]
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in example["receivers"]]
    timings = ("group_wait", "group_interval", "repeat_interval")

    def untimed(route: dict) -> dict:
        out = {k: v for k, v in route.items() if k not in timings}
        if "routes" in route:
            out["routes"] = [untimed(child) for child in route["routes"]]
        return out

    assert untimed(config["route"]) == untimed(example["route"])


def firing(notification: Notification) -> bool:
    return any(a["status"] == "firing" for a in notification.alerts(ALERT))


def resolved(notification: Notification) -> bool:
    return any(a["status"] == "resolved" for a in notification.alerts(ALERT))


async def test_a_failing_worker_group_is_notified_then_resolved(
    fake_vast, run_exporter, tmp_path, record_property
) -> None:
    prometheus = require_binary("prometheus")
    alertmanager, _ = alertmanager_binaries()
    fake_vast.set_account(
        [endpoint(ENDPOINT_ID, ENDPOINT_NAME)],
        [worker_group(GROUP_ID, ENDPOINT_ID, ENDPOINT_NAME)],
    )
    fake_vast.set("worker_group", GROUP_ID, workers(worker(1), worker(2)))
    exporter = await run_exporter(
        fast_config(
            fake_vast.url,
            vast={"console_url": fake_vast.url},
            discovery={"enabled": True, "interval": "1s"},
        )
    )
    await exporter.wait_for_metrics(
        lambda s: bool(series(s, "vastai_target_up", kind="worker_group", id=str(GROUP_ID)))
    )
    instance = exporter.url.removeprefix("http://")
    receiver = await WebhookReceiver().start()
    stack = AlertingStack(tmp_path, prometheus, alertmanager)
    loop = asyncio.get_running_loop()
    try:
        await stack.start(instance, rules_with_short_for({ALERT: SHORT_FOR}), receiver.url)
        await prometheus_has(
            stack.prometheus_url,
            f'vastai_target_up{{id="{GROUP_ID}"}} == 1 '
            f'and on () vastai_worker_group_info{{worker_group_id="{GROUP_ID}"}}',
        )
        assert not [n for n in receiver.notifications if n.alerts(ALERT)], "nothing before"

        failed_at = loop.time()
        fake_vast.set("worker_group", GROUP_ID, failure(500, "Internal Server Error"))
        fired = await delivered(receiver, firing, stack)
        recovered_at = loop.time()
        fake_vast.set("worker_group", GROUP_ID, workers(worker(1), worker(2)))
        cleared = await delivered(receiver, resolved, stack)
    finally:
        await stack.stop()
        await receiver.close()

    check_firing(fired, instance)
    check_resolved(cleared, fired)
    timings = {
        "failure_to_firing_s": fired.at - failed_at,
        "recovery_to_resolved_s": cleared.at - recovered_at,
    }
    for name, seconds in timings.items():
        record_property(name, round(seconds, 2))
    print(" ".join(f"{name}={seconds:.3f}" for name, seconds in timings.items()))


async def delivered(
    receiver: WebhookReceiver, which: Callable[[Notification], bool], stack: AlertingStack
) -> Notification:
    try:
        return await receiver.wait_for(which, DELIVERY_TIMEOUT)
    except TimeoutError:
        got = [(n.receiver, n.body.get("status")) for n in receiver.notifications]
        pytest.fail(f"no {which.__name__} {ALERT} in {DELIVERY_TIMEOUT}s: {got}\n{stack.log()}")


def check_firing(notification: Notification, instance: str) -> None:
    rule = next(
        r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]
        if r.get("alert") == ALERT
    )  # fmt: skip
    assert notification.receiver == "vastai", "the example routes warnings to its default"
    assert notification.body["status"] == "firing"
    (alert,) = notification.alerts(ALERT)
    assert alert["labels"] == {
        "alertname": ALERT,
        "severity": rule["labels"]["severity"],
        "job": "vastai",
        "instance": instance,
        "kind": "worker_group",
        "id": str(GROUP_ID),
        "endpoint_id": str(ENDPOINT_ID),
        "endpoint_name": ENDPOINT_NAME,
    }
    assert notification.body["groupLabels"] == {
        k: alert["labels"][k] for k in ("alertname", "job", "endpoint_name", "kind", "id")
    }
    tail = rule["annotations"]["description"].split("{{ $labels.instance }}", 1)[1]
    assert alert["annotations"] == {
        "summary": f"Vast.ai worker_group {GROUP_ID} cannot be polled",
        "description": (
            f"Every poll of worker_group {GROUP_ID} of endpoint {ENDPOINT_NAME} by {instance}"
            + tail
        ),
        "runbook_url": f"{RUNBOOK_BASE}#{ALERT.lower()}",
    }


def check_resolved(notification: Notification, fired: Notification) -> None:
    assert notification.receiver == "vastai"
    assert notification.body["status"] == "resolved"
    (alert,) = notification.alerts(ALERT)
    (before,) = fired.alerts(ALERT)
    assert alert["labels"] == before["labels"]
    assert alert["annotations"] == before["annotations"]
    assert alert["startsAt"] == before["startsAt"]
    assert alert["endsAt"] > alert["startsAt"]
