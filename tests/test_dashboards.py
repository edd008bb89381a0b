"""Static checks of the Grafana dashboards in grafana/dashboards/.

Every dashboard must parse, follow the conventions of issue 3 (datasource variable, descriptions,
units, $__rate_interval, fixed unique uids), and every PromQL expression must parse and name only
metrics the exporter exports (issue 12: the dashboards work without the recording rules). The
one recorded series drawn, the spend alert's threshold line (RULE_BACKED), falls back to the
rules' default on the exporter's own series where the rules are not loaded (issue 25).
Expressions are parsed by promtool: they are written, with the Grafana variables substituted, as
recording rules into a temporary file and checked with `promtool check rules`. Without promtool
these tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import promtool

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
RULES_FILE = ROOT / "deploy" / "prometheus" / "vastai-rules.yaml"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))

# The exporter's metrics (the contract of the core exporter issue).
EXPORTED_METRICS = {
    "vastai_worker_cur_load",
    "vastai_worker_cur_load_rolling_avg",
    "vastai_worker_cur_perf",
    "vastai_worker_disk_usage_bytes",
    "vastai_worker_dlperf",
    "vastai_worker_loaded_timestamp_seconds",
    "vastai_worker_measured_perf",
    "vastai_worker_perf",
    "vastai_worker_reliability",
    "vastai_worker_reqs_working",
    "vastai_worker_status",
    "vastai_target_up",
    "vastai_target_workers",
    "vastai_target_last_success_timestamp_seconds",
    "vastai_target_poll_duration_seconds",
    "vastai_target_poll_errors_total",
    "vastai_exporter_build_info",
    # endpoint settings and worker groups from the account listing (issue 6)
    "vastai_endpoint_info",
    "vastai_endpoint_max_workers",
    "vastai_endpoint_min_load",
    "vastai_endpoint_target_util",
    "vastai_endpoint_cold_mult",
    "vastai_endpoint_cold_workers",
    "vastai_worker_group_info",
    # the worker groups' own autoscaler settings, as the listing carries them (issue 22)
    "vastai_worker_group_min_load",
    "vastai_worker_group_target_util",
    "vastai_worker_group_cold_mult",
    # hardware and price from the account's instance list (issue 7)
    "vastai_worker_instance_info",
    "vastai_worker_price_dollars_per_hour",
    # serverless lifecycle per endpoint (issue 14)
    "vastai_endpoint_cold_start_seconds_bucket",
    "vastai_endpoint_cold_start_seconds_count",
    "vastai_endpoint_cold_start_seconds_sum",
    "vastai_endpoint_workers_added_total",
    "vastai_endpoint_workers_removed_total",
    "vastai_endpoint_worker_errors_total",
    "vastai_endpoint_worker_state_seconds_total",
    # not-ready targets (issue 10)
    "vastai_target_not_ready",
    # the v1 instance list: what Vast bills, GPU telemetry (issue 11)
    "vastai_worker_billed_dollars_per_hour",
    "vastai_worker_gpu_utilization_ratio",
    "vastai_worker_gpu_temperature_celsius",
    "vastai_worker_gpu_memory_used_bytes",
    "vastai_worker_gpu_memory_total_bytes",
    # account billing (issue 13)
    "vastai_account_credit_dollars",
    "vastai_account_balance_dollars",
    "vastai_account_charges_today_dollars",
    "vastai_endpoint_charges_today_dollars",
    # deployments: version, health, expiry, rollout (issue 24)
    "vastai_deployment_current_version_id",
    "vastai_deployment_last_healthy_version_id",
    "vastai_deployment_healthy",
    "vastai_deployment_version_info",
    "vastai_deployment_versions",
    "vastai_deployment_expiry_timestamp_seconds",
    "vastai_deployment_workers",
    # supply and contracts (issue 23)
    "vastai_worker_group_offers",
    "vastai_worker_group_offer_min_price_dollars_per_hour",
    "vastai_worker_group_offer_median_price_dollars_per_hour",
    "vastai_worker_group_supply_query_valid",
    "vastai_worker_pending_price_increase",
    "vastai_worker_gpu_price_per_gpu_dollars_per_hour",
    "vastai_worker_contract_end_timestamp_seconds",
}
# The only recorded series a panel may draw: the spend alert's threshold, which the rules define (a
# default and per-endpoint overrides). Its query falls back to the rules' default (the record
# named here) on the exporter's own series while the record is absent, so that a user who
# imports only the JSON sees the line too; its panel says so in its description.
RULE_DEFAULTS = {
    "endpoint:vastai_spend_threshold_dollars_per_hour:effective": (
        "global:vastai_spend_threshold_dollars_per_hour:default"
    ),
}
RULE_BACKED = set(RULE_DEFAULTS)
REQUIRED_VARIABLES = ["datasource", "job", "endpoint", "worker_group", "worker"]
DATASOURCE_UID = "${datasource}"
VARIABLE_QUERY_RE = re.compile(r"label_values\((.+),\s*\w+\s*\)|query_result\((.+)\)", re.S)

# PromQL words that look like metric names but are not.
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
REGEX_MATCHER_RE = re.compile(r'[=!]~\s*(?:"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`)')
USER_VARIABLE_RE = re.compile(
    r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]"
)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def data_panels(dashboard: dict) -> list[dict]:
    return [p for p in all_panels(dashboard) if p.get("type") != "row"]


def variable_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(name, PromQL) of the query variables: label_values(SELECTOR, label), query_result(EXPR)."""
    out = []
    for var in dashboard["templating"]["list"]:
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        query = query.strip()
        if m := VARIABLE_QUERY_RE.fullmatch(query):
            out.append((var["name"], m.group(1) or m.group(2)))
    return out


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every variable query."""
    out = []
    for panel in data_panels(dashboard):
        for target in panel.get("targets", []):
            out.append(
                (f"{dashboard['uid']} / {panel['title']} / {target['refId']}", target["expr"])
            )
    for name, expr in variable_expressions(dashboard):
        out.append((f"{dashboard['uid']} / variable {name}", expr))
    return out


def all_expressions() -> list[tuple[str, str]]:
    return [e for path in DASHBOARDS for e in expressions(load(path))]


def substitute(expr: str) -> str:
    """Replace Grafana's variables with values that keep the expression valid PromQL."""
    expr = re.sub(r"\$\{?__rate_interval\}?|\$\{?__interval\}?", "1m", expr)
    expr = re.sub(r"\$\{?__range\}?", "1h", expr)
    return USER_VARIABLE_RE.sub(".*", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names in a (substituted) PromQL expression: identifiers that are neither functions,
    aggregations, keywords, label names, nor inside strings, label matchers or ranges."""
    s = STRING_RE.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", s):
        name, is_call = m.group(1), m.group(2)
        if is_call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def recorded_names() -> set[str]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


# ------------------------------------------------------------------------------------ tests


def test_the_two_dashboards_exist():
    names = {p.name for p in DASHBOARDS}
    assert {"vastai-overview.json", "vastai-workers.json"} <= names


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_basics(path):
    dashboard = load(path)
    assert dashboard["schemaVersion"] >= 39
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"]), "a fixed, readable uid"
    assert dashboard.get("id") is None, "no database id in a provisioned dashboard"
    assert "vastai" in dashboard["tags"]
    assert dashboard["title"].startswith("Vast.ai Serverless / ")
    assert "__inputs" not in dashboard, "the datasource comes from the variable, not an import"
    panel_ids = [p["id"] for p in all_panels(dashboard)]
    assert len(panel_ids) == len(set(panel_ids)), "panel ids are unique"


def test_uids_and_titles_are_unique():
    dashboards = [load(p) for p in DASHBOARDS]
    uids = [d["uid"] for d in dashboards]
    titles = [d["title"] for d in dashboards]
    assert len(uids) == len(set(uids))
    assert len(titles) == len(set(titles))
    assert {"Vast.ai Serverless / Overview", "Vast.ai Serverless / Workers"} <= set(titles)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_variables(path):
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    for name in REQUIRED_VARIABLES:
        assert name in variables, f"variable {name} missing"
    ds = variables["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    for name in REQUIRED_VARIABLES[1:]:
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] == DATASOURCE_UID
        # multi-value variables must match every value (and empty labels) when All is picked
        if var.get("includeAll"):
            assert var.get("allValue") == ".*", f"{name}: allValue .* so that All matches all"
    endpoint = variables["endpoint"]
    assert endpoint["multi"] is True
    assert endpoint["includeAll"] is True
    assert "endpoint_name" in endpoint["definition"], "the endpoint variable is by name"
    for name in ("worker_group", "worker"):
        assert variables[name]["multi"] is True
        assert variables[name]["includeAll"] is True


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_title_description_datasource_and_unit(path):
    dashboard = load(path)
    panels = data_panels(dashboard)
    assert len(panels) >= 6
    for panel in panels:
        title = panel.get("title", "")
        assert title.strip(), f"panel {panel['id']} has no title"
        assert len(panel.get("description", "").strip()) >= 30, f"{title}: no useful description"
        assert panel.get("datasource") == {"type": "prometheus", "uid": DATASOURCE_UID}, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel.get("targets"), f"{title}: no query"
        for target in panel["targets"]:
            assert target.get("datasource", {}).get("uid") == DATASOURCE_UID, title
            assert target.get("expr", "").strip(), f"{title}: empty query"
        if repeat := panel.get("repeat"):
            variables = {v["name"]: v for v in dashboard["templating"]["list"]}
            assert variables[repeat]["multi"], f"{title}: repeats over a multi-value variable"


# A fixed window that is part of a definition (idle spend: "over the last 15 minutes", as the
# recording rule and its alert), not a rate: allowed in *_over_time calls only.
DEFINED_WINDOWS = {"15m"}


def test_ranges_use_rate_interval():
    rated = 0
    for where, expr in all_expressions():
        unquoted = STRING_RE.sub('""', expr)
        for match in re.finditer(r"\[([^\]]*)\]", unquoted):
            window = match.group(1)
            call = re.search(r"(\w+)\s*\([^()]*$", unquoted[: match.start()])
            if call and call.group(1).endswith("_over_time") and window in DEFINED_WINDOWS:
                continue
            assert window in ("$__rate_interval", "${__rate_interval}"), f"{where}: [{window}]"
        rated += bool(re.search(r"\b(?:rate|increase|irate)\s*\(", unquoted))
    assert rated, "the poll error counter is shown as a rate"


def test_variables_only_in_regex_matchers():
    """Multi-value variables expand to regexes: they belong in =~ or !~ matchers only."""
    for where, expr in all_expressions():
        outside = REGEX_MATCHER_RE.sub("", expr)
        for m in USER_VARIABLE_RE.finditer(outside):
            name = next(g for g in m.groups() if g)
            assert name.startswith("__"), f"{where}: ${name} outside a regex matcher"
    for where, expr in all_expressions():
        if not where.endswith("/ variable job"):
            assert 'job=~"$job"' in expr, f"{where}: not filtered by $job"


def rule_backed(expr: str) -> bool:
    return bool(metric_names(substitute(expr)) & RULE_BACKED)


def test_only_the_exporters_own_metrics():
    """A user who imports only the JSON sees data: no panel needs a recording rule."""
    assert recorded_names() >= RULE_BACKED
    used = set()
    for where, expr in all_expressions():
        names = metric_names(substitute(expr))
        assert names, f"{where}: no metric found in {expr!r}"
        unknown = names - EXPORTED_METRICS - RULE_BACKED
        assert not unknown, f"{where}: not the exporter's own series: {sorted(unknown)}"
        used |= names
    assert {
        "vastai_target_up",
        "vastai_target_poll_errors_total",
        "vastai_target_last_success_timestamp_seconds",
        "vastai_target_poll_duration_seconds",
    } <= used


def test_rule_backed_series_are_extra_lines_with_a_note():
    """A rule-backed query is never a panel's only query, and the panel says it needs the rules."""
    for path in DASHBOARDS:
        for panel in data_panels(load(path)):
            backed = [t for t in panel["targets"] if rule_backed(t["expr"])]
            if backed:
                assert len(backed) < len(panel["targets"]), panel["title"]
                assert "recording rules" in panel["description"], panel["title"]


def test_rule_backed_lines_fall_back_to_the_rules_default():
    """Without the rules, a rule-backed line is the rules' default over the series the record is
    computed from: `RECORD{...} or (BASE * 0 + DEFAULT and on () absent(RECORD))`, where BASE is
    the expression of the record's base record, its raw series filtered as the panel is."""
    rules = yaml.safe_load(RULES_FILE.read_text())
    by_name = {r.get("record"): r["expr"] for g in rules["groups"] for r in g["rules"]}
    backed = [(where, expr) for where, expr in all_expressions() if rule_backed(expr)]
    assert backed, "the spend threshold line"
    for where, expr in backed:
        (record,) = metric_names(substitute(expr)) & RULE_BACKED
        default = re.fullmatch(r"vector\((\d+(?:\.\d+)?)\)", by_name[RULE_DEFAULTS[record]].strip())
        assert default, f"{RULE_DEFAULTS[record]} is a constant"
        head, fallback = expr.split("\nor\n", 1)
        assert head == f'{record}{{job=~"$job", endpoint_name=~"$endpoint"}}', where
        base = re.match(r"\s*([\w:]+) \* 0\b", by_name[record])
        assert base, f"{record} is its base record * 0 + a threshold"
        filtered = re.sub(
            r"(?<![\w:])(vastai_\w+)",
            r'\1{job=~"$job", endpoint_name=~"$endpoint"}',
            " ".join(by_name[base.group(1)].split()),
        )
        assert " ".join(fallback.split()) == (
            f"( {filtered} * 0 + {default.group(1)} and on () absent({record}) )"
        ), where


def test_metric_name_extraction():
    expr = (
        'sum by (reason) (rate(vastai_target_poll_errors_total{job=~".*", id="1e3"}[1m])) '
        "/ on (job) group_left () endpoint:vastai_worker_perf:sum offset 5m > 1e3 "
        "and time() - vastai_worker_loaded_timestamp_seconds > bool 0"
    )
    assert metric_names(expr) == {
        "vastai_target_poll_errors_total",
        "endpoint:vastai_worker_perf:sum",
        "vastai_worker_loaded_timestamp_seconds",
    }
    assert substitute('x{a=~"$endpoint",b=~"${worker:regex}"}[$__rate_interval]') == (
        'x{a=~".*",b=~".*"}[1m]'
    )


BY_ENDPOINT = "by (job, endpoint_id, endpoint_name)"
ENDPOINT_FILTER = 'job=~"$job", endpoint_name=~"$endpoint"'
WORKER_STATUS = f"vastai_worker_status{{{ENDPOINT_FILTER}}}"
# all workers per endpoint, 0 for a polled or active endpoint without any
WORKERS_PER_ENDPOINT = f"count {BY_ENDPOINT} ({WORKER_STATUS})\nor on (job, endpoint_id)"


def test_overview_covers_the_issue():
    exprs = " ".join(e for _, e in expressions(load(DASHBOARD_DIR / "vastai-overview.json")))
    for needle in (
        f"count by (job, endpoint_id, endpoint_name, status) ({WORKER_STATUS}",  # by status
        f"sum {BY_ENDPOINT} (vastai_worker_cur_load{{",  # demand
        f"sum {BY_ENDPOINT} (vastai_worker_perf{{",  # capacity
        f"/ (sum {BY_ENDPOINT} (vastai_worker_perf{{",  # their ratio
        f"sum {BY_ENDPOINT} (vastai_worker_reqs_working{{",
        f"avg {BY_ENDPOINT} (vastai_worker_reliability{{",
        f'count {BY_ENDPOINT} (vastai_worker_status{{{ENDPOINT_FILTER}, status=~"creating|',
        "vastai_worker_loaded_timestamp_seconds",  # time since load
        "vastai_target_up",
        "vastai_target_poll_errors_total",
        "vastai_target_last_success_timestamp_seconds",
        "vastai_target_poll_duration_seconds",
    ):
        assert needle in exprs, needle
    stacked = [
        p
        for p in data_panels(load(DASHBOARD_DIR / "vastai-overview.json"))
        if "count by (job, endpoint_id, endpoint_name, status)" in p["targets"][0]["expr"]
    ]
    assert stacked[0]["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


def test_overview_sets_workers_and_load_against_the_endpoint_settings():
    """Issue 6: workers against max_workers, load against min_load, the settings at a glance."""
    panels = data_panels(load(DASHBOARD_DIR / "vastai-overview.json"))

    def exprs_of(panel: dict) -> str:
        return " ".join(t["expr"] for t in panel["targets"])

    def panel_with(*needles: str) -> dict:
        found = [p for p in panels if all(n in exprs_of(p) for n in needles)]
        assert found, f"no panel shows {needles}"
        return found[0]

    max_workers = f"max {BY_ENDPOINT} (vastai_endpoint_max_workers{{"
    panel_with(WORKERS_PER_ENDPOINT, max_workers)
    panel_with(f"sum {BY_ENDPOINT} (vastai_worker_cur_load{{", "(vastai_endpoint_min_load{")
    panel_with(f"/ (sum {BY_ENDPOINT} (vastai_worker_perf{{", "(vastai_endpoint_target_util{")
    ratio = panel_with(f"/ on (job, endpoint_id) group_left ()\n  ({max_workers}")
    assert " ".join(WORKERS_PER_ENDPOINT.split()) in " ".join(exprs_of(ratio).split())
    settings = panel_with("vastai_endpoint_info", "vastai_endpoint_cold_workers")
    assert settings["type"] == "table"


def test_cost_panels():
    """Issue 7: spend per endpoint, spend by GPU model, cost per unit of work."""
    overview = " ".join(e for _, e in expressions(load(DASHBOARD_DIR / "vastai-overview.json")))
    per_worker = "max by (job, endpoint_id, endpoint_name, worker_id"
    for needle in (
        f"sum {BY_ENDPOINT} (\n  {per_worker}) (vastai_worker_price_dollars_per_hour{{",  # spend
        "endpoint:vastai_spend_threshold_dollars_per_hour:effective",  # and its alert threshold
        f"sum by (gpu_name) (\n  {per_worker}, gpu_name) (\n    vastai_worker_price_dollars",
        "* 3600 > 0\n  )\n* 1e6",  # per unit of work
        f"count by (gpu_name) (\n  {per_worker}, gpu_name) (vastai_worker_instance_info{{",
    ):
        assert needle in overview, needle
    workers = " ".join(e for _, e in expressions(load(DASHBOARD_DIR / "vastai-workers.json")))
    for needle in ("vastai_worker_price_dollars_per_hour", "vastai_worker_instance_info"):
        assert needle in workers, needle
    money = [
        p
        for path in DASHBOARDS
        for p in data_panels(load(path))
        if "price_dollars" in " ".join(t["expr"] for t in p["targets"])
        or "cost_dollars" in " ".join(t["expr"] for t in p["targets"])
    ]
    assert len(money) >= 6
    ratios = ("Credit runway", "Worker price over the cheapest offer")  # hours, a ratio
    for panel in money:
        if panel["type"] != "table" and panel["title"] not in ratios:
            assert panel["fieldConfig"]["defaults"]["unit"] == "currencyUSD", panel["title"]


def test_lifecycle_row_comes_last_and_queries_the_exporters_series():
    """Issue 14: cold-start p50/p90, scale-ups and downs, time loading, errors, from the raw
    series (so the panels do not depend on the recording rules)."""
    panels = load(DASHBOARD_DIR / "vastai-overview.json")["panels"]
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"]
    assert panels[rows[-1]]["title"] == "Lifecycle"
    lifecycle = panels[rows[-1] + 1 :]
    exprs = " ".join(t["expr"] for p in lifecycle for t in p["targets"])
    for needle in (
        "histogram_quantile(0.5, sum by (le, endpoint_name) (rate("
        "vastai_endpoint_cold_start_seconds_bucket",
        "histogram_quantile(0.9, sum by (le, endpoint_name) (rate("
        "vastai_endpoint_cold_start_seconds_bucket",
        "vastai_endpoint_workers_added_total",
        "vastai_endpoint_workers_removed_total",
        "vastai_endpoint_worker_errors_total",
        "vastai_endpoint_worker_state_seconds_total",
    ):
        assert needle in exprs, needle
    names = set().union(
        *(metric_names(substitute(t["expr"])) for p in lifecycle for t in p["targets"])
    )
    assert names and not names & recorded_names()


def test_workers_dashboard_has_the_table():
    dashboard = load(DASHBOARD_DIR / "vastai-workers.json")
    tables = [p for p in data_panels(dashboard) if p["type"] == "table"]
    assert tables, "a table of workers"
    exprs = " ".join(t["expr"] for t in tables[0]["targets"])
    for metric in (
        "vastai_worker_status",
        "vastai_worker_cur_load",
        "vastai_worker_perf",
        "vastai_worker_reliability",
        "vastai_worker_disk_usage_bytes",
        "vastai_worker_loaded_timestamp_seconds",
    ):
        assert metric in exprs, metric
    series = [p for p in data_panels(dashboard) if p["type"] == "timeseries"]
    assert len(series) >= 5, "per-worker time series"
    for panel in series:
        for target in panel["targets"]:
            assert 'worker_id=~"$worker"' in target["expr"], panel["title"]


def test_every_expression_parses(tmp_path):
    tool = promtool()
    exprs = all_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:expr_{i}:check", "expr": substitute(expr)}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    proc = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    listing = "\n".join(f"{i}: {where}: {expr}" for i, (where, expr) in enumerate(exprs))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{listing}"


def test_deployments_row_shows_version_health_rollout_and_expiry():
    """Issue 24: per deployment its version, healthy or not, rollout progress and time to
    expiry, from the exporter's own series."""
    panels = load(DASHBOARD_DIR / "vastai-overview.json")["panels"]
    start = next(
        i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Deployments"
    )
    end = next(i for i, p in enumerate(panels) if i > start and p["type"] == "row")
    row = panels[start + 1 : end]
    exprs = " ".join(t["expr"] for p in row for t in p["targets"])
    for needle in (
        "vastai_deployment_current_version_id{",
        "vastai_deployment_version_info{",
        "vastai_deployment_healthy{",
        'endpoint_name=~"$endpoint", version="current"})\n/ (sum by',  # rollout progress
        "(vastai_deployment_expiry_timestamp_seconds{",
    ):
        assert needle in exprs, needle
    assert "- time()" in exprs
    names = set().union(*(metric_names(substitute(t["expr"])) for p in row for t in p["targets"]))
    assert names and not names & recorded_names()
