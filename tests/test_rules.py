"""Checks of the Prometheus rules and configuration in deploy/prometheus/.

`promtool check rules`, `promtool test rules` and `promtool check config` must pass; every alert
carries a severity and a summary and description, and is proven by the unit tests both to fire
and to stay silent. Without promtool the promtool tests skip, except in CI (CI=true), where they
fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import promtool

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES_FILE = PROM_DIR / "vastai-rules.yaml"
RULES_TEST_FILE = PROM_DIR / "vastai-rules.test.yaml"
PROMETHEUS_CONFIG = PROM_DIR / "prometheus.yml"

SEVERITIES = {"critical", "warning", "info"}
# at least one alert per situation of issue 3
REQUIRED_ALERTS = {
    "VastaiExporterAbsent",  # the exporter itself absent
    "VastaiTargetDown",  # a target down ...
    "VastaiTargetStale",  # ... or stale for several polls
    "VastaiEndpointNoReadyWorker",
    "VastaiEndpointDemandAboveCapacity",
    "VastaiWorkerStuckLoading",
    "VastaiWorkerErrorLoop",  # cycling through error/rebooting
    "VastaiWorkerLowReliability",
    "VastaiEndpointAtMaxWorkers",  # issue 6: capped by max_workers while demand exceeds capacity
    "VastaiEndpointSpendHigh",  # issue 7: spend per endpoint above a configurable threshold
    "VastaiTargetNotReady",  # issue 10: Vast cannot list the target's workers for 30 minutes
    "VastaiEndpointSlowColdStart",  # issue 14: p90 cold start over an hour above a threshold
    "VastaiEndpointIdleSpend",  # issue 11: ready workers idle on the GPU cost over a threshold
    "VastaiWorkerGpuHot",  # issue 11: a GPU over 85 °C for 10 minutes
    "VastaiCreditLow",  # issue 13: the credit lasts under 48 hours at the current spend
    "VastaiCreditCritical",  # issue 13: ... under 6 hours
    "VastaiDeploymentUnhealthy",  # issue 24: not on its last healthy version for 30 minutes
    "VastaiDeploymentExpiring",  # issue 24: torn down within 10 minutes, heartbeats late
    "VastaiDeploymentRolloutStalled",  # issue 24: workers on two versions for 30 minutes
    "VastaiWorkerGroupNoSupply",  # issue 23: a polled group's query matches no offer for 15m
    "VastaiWorkerContractEnding",  # issue 23: a pending price increase, contract ends within 24h
}
REQUIRED_RECORDS = {
    "endpoint:vastai_worker_cur_load:sum",
    "endpoint:vastai_worker_perf:sum",
    "endpoint:vastai_worker_utilization:ratio",
    "endpoint:vastai_workers_ready:count",
    # issue 6: the endpoint settings, shard-safe
    "endpoint:vastai_endpoint_max_workers:max",
    "endpoint:vastai_endpoint_min_load:max",
    "endpoint:vastai_workers_of_max_workers:ratio",
    # issue 7: spend in $/h, by GPU model, per unit of work, and the spend alert's threshold
    "endpoint:vastai_worker_price_dollars_per_hour:sum",
    "endpoint_gpu:vastai_worker_price_dollars_per_hour:sum",
    "endpoint:vastai_cost_dollars_per_million_perf_units:ratio",
    "global:vastai_spend_threshold_dollars_per_hour:default",
    "endpoint:vastai_spend_threshold_dollars_per_hour:effective",
    # issue 14: cold starts, scale-ups and scale-downs, time loading, the cold-start threshold
    "endpoint:vastai_endpoint_cold_start_seconds:p50_rate1h",
    "endpoint:vastai_endpoint_cold_start_seconds:p90_rate1h",
    "endpoint:vastai_endpoint_workers_added:increase1h",
    "endpoint:vastai_endpoint_workers_removed:increase1h",
    "endpoint:vastai_endpoint_worker_errors:increase1h",
    "endpoint:vastai_endpoint_worker_state_seconds:loading_ratio_rate1h",
    "global:vastai_cold_start_threshold_seconds:default",
    "endpoint:vastai_cold_start_threshold_seconds:effective",
    # issue 11: what Vast bills, and idle spend with its alert's threshold
    "endpoint:vastai_worker_billed_dollars_per_hour:sum",
    "endpoint_gpu:vastai_worker_billed_dollars_per_hour:sum",
    "endpoint:vastai_idle_spend_dollars_per_hour:sum",
    "global:vastai_idle_spend_threshold_dollars_per_hour:default",
    "endpoint:vastai_idle_spend_threshold_dollars_per_hour:effective",
    # issue 13: how long the credit lasts
    "account:vastai_credit_runway:hours",
    # issue 23: each worker's price over its group's cheapest offer
    "worker:vastai_worker_price_over_cheapest_offer:ratio",
}


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=PROM_DIR
    )


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def test_promtool_check_rules():
    proc = run_promtool("check", "rules", RULES_FILE.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules():
    proc = run_promtool("test", "rules", RULES_TEST_FILE.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_check_config():
    proc = run_promtool("check", "config", PROMETHEUS_CONFIG.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_severity_summary_description():
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), "alert names are unique"
    assert set(names) >= REQUIRED_ALERTS
    for alert in alerts():
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = alert.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        assert len(annotations.get("description", "").strip()) >= 40, f"{name}: no description"
        assert re.fullmatch(r"Vastai[A-Z]\w+", name), f"{name}: CamelCase with the Vastai prefix"


def test_recording_rules_follow_the_naming_convention():
    records = [r["record"] for r in rules() if "record" in r]
    assert len(records) == len(set(records))
    assert set(records) >= REQUIRED_RECORDS
    for record in records:
        # level:metric:operations
        assert re.fullmatch(r"[a-z_]+:vastai_[a-z0-9_]+:[a-z0-9_]+", record), record


@pytest.mark.parametrize(
    ("alert_name", "threshold", "default"),
    [
        ("VastaiEndpointSpendHigh", "vastai_spend_threshold_dollars_per_hour", None),
        ("VastaiEndpointSlowColdStart", "vastai_cold_start_threshold_seconds", "600"),
    ],
)
def test_thresholds_are_configured_outside_the_alert(
    alert_name: str, threshold: str, default: str | None
):
    """The threshold is a default record plus per-endpoint overrides, not a number in the alert."""
    by_name = {r.get("alert") or r.get("record"): r for r in rules()}
    alert = by_name[alert_name]["expr"]
    assert f"endpoint:{threshold}:effective" in alert
    assert not re.search(r"(?<![\w:.])\d", alert), "no hard-coded threshold in the alert"
    default_expr = by_name[f"global:{threshold}:default"]["expr"].strip()
    assert re.fullmatch(r"vector\(\d+(\.\d+)?\)", default_expr)
    if default is not None:
        assert default_expr == f"vector({default})"
    effective = by_name[f"endpoint:{threshold}:effective"]["expr"]
    assert f"endpoint:{threshold}:override" in effective
    assert f"global:{threshold}:default" in effective
    # the override is documented in the rules file
    assert f"record: endpoint:{threshold}:override" in RULES_FILE.read_text()


def test_each_alert_is_tested_firing_and_silent():
    doc = yaml.safe_load(RULES_TEST_FILE.read_text())
    assert doc["rule_files"] == [RULES_FILE.name]
    fires: set[str] = set()
    silent: set[str] = set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - silent == set(), "alerts never shown to stay silent"


def test_prometheus_config_scrapes_the_exporter_and_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert RULES_FILE.name in config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # VastaiExporterAbsent looks for job="vastai"
    assert "vastai" in jobs
    assert 'job="vastai"' in RULES_FILE.read_text()
    targets = [t for sc in jobs["vastai"]["static_configs"] for t in sc["targets"]]
    assert "vastai-exporter:9840" in targets
