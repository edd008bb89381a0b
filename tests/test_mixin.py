"""The monitoring mixin in mixin/, rendered with the jsonnet package from PyPI.

One source of truth: with its default _config the mixin renders exactly the groups of
deploy/prometheus/vastai-rules.yaml and the dashboards of grafana/dashboards/ (it reads copies
that mixin/generate.py keeps current); a job selector and a runbook base URL of the user's change
the alerts that must follow them and nothing else. The README's commands render the mixin as
vendored on its own, with the `jsonnet` command (Debian's package; required under CI=true).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import _jsonnet  # the jsonnet package of PyPI (the test extra)
import pytest
import yaml

from .conftest import promtool, require_binary
from .test_runbooks import RUNBOOK_BASE

ROOT = Path(__file__).resolve().parent.parent
MIXIN = ROOT / "mixin"
RULES_FILE = ROOT / "deploy" / "prometheus" / "vastai-rules.yaml"
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
GENERATOR = MIXIN / "generate.py"
README = ROOT / "README.md"
ABSENT = "VastaiExporterAbsent"
CUSTOM = {
    "vastaiSelector": 'job=~"vast-(prod|staging)"',
    "runbookURLBase": "https://wiki.test/vast",
}


def render(config: dict[str, str] | None = None, mixin: Path = MIXIN) -> dict:
    """prometheusAlerts, prometheusRules and grafanaDashboards, with `config` over _config."""
    return json.loads(rendered_text(json.dumps(config or {}), str(mixin)))


@functools.cache
def rendered_text(config: str, mixin: str) -> str:
    """The render as JSON text, once per config and directory (a render takes a fraction of a
    second; callers get their own copy to change)."""
    overrides = json.dumps({"_config+::": json.loads(config)}).replace('"_config+::"', "_config+::")
    snippet = (
        f"local m = (import 'mixin.libsonnet') + {overrides};\n"
        "{alerts: m.prometheusAlerts, rules: m.prometheusRules, dashboards: m.grafanaDashboards}"
    )
    return _jsonnet.evaluate_snippet(str(Path(mixin) / "render.jsonnet"), snippet)


def alerts_by_name(rendered: dict) -> dict[str, dict]:
    return {r["alert"]: r for g in rendered["alerts"]["groups"] for r in g["rules"]}


def test_the_copies_are_current():
    spec = importlib.util.spec_from_file_location("mixin_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    copies = module.rendered()
    assert set(copies) == {MIXIN / "rules" / "vastai-rules.json"} | {
        MIXIN / "dashboards" / p.name for p in DASHBOARD_DIR.glob("*.json")
    }
    for path, text in copies.items():
        assert path.read_text() == text, f"{path.name} is stale: python3 mixin/generate.py"
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_default_render_is_the_rules_file_and_the_dashboards():
    rendered = render()
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    recording, alerting = rendered["rules"]["groups"], rendered["alerts"]["groups"]
    assert all("record" in r for g in recording for r in g["rules"]) and recording
    assert all("alert" in r for g in alerting for r in g["rules"]) and alerting
    assert recording + alerting == groups
    dashboards = {p.name: json.loads(p.read_text()) for p in DASHBOARD_DIR.glob("*.json")}
    assert rendered["dashboards"] == dashboards


def test_config_changes_the_selector_and_the_runbook_urls_and_nothing_else():
    default, custom = render(), render(CUSTOM)
    assert custom["rules"] == default["rules"]
    assert custom["dashboards"] == default["dashboards"]
    before, after = alerts_by_name(default), alerts_by_name(custom)
    assert list(after) == list(before)
    for name, alert in after.items():
        assert alert["annotations"]["runbook_url"] == f"{CUSTOM['runbookURLBase']}#{name.lower()}"
        assert before[name]["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"
    absent = after[ABSENT]
    assert absent["expr"] == 'absent(up{job=~"vast-(prod|staging)"} == 1)'
    assert absent["annotations"]["description"].count(CUSTOM["vastaiSelector"]) == 2
    assert 'job="vastai"' not in json.dumps(custom["alerts"])
    # undo the two changes: what is left is the default render
    for name, alert in after.items():
        alert["annotations"]["runbook_url"] = before[name]["annotations"]["runbook_url"]
    absent["expr"] = before[ABSENT]["expr"]
    absent["annotations"]["description"] = before[ABSENT]["annotations"]["description"]
    assert custom["alerts"] == default["alerts"]


def test_a_configured_render_is_a_valid_rule_file(tmp_path):
    custom = render(CUSTOM)
    path = tmp_path / "vastai-mixin-rules.yaml"
    groups = custom["rules"]["groups"] + custom["alerts"]["groups"]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_runbook_url_the_mixin_cannot_rewrite_stops_the_render(tmp_path):
    """The mixin replaces runbook URLs of the form it knows; another one fails loudly."""
    copy = tmp_path / "mixin"
    shutil.copytree(MIXIN, copy)
    rules = copy / "rules" / "vastai-rules.json"
    rules.write_text(rules.read_text().replace("#vastaitargetdown", "#target-down", 1))
    with pytest.raises(RuntimeError, match="VastaiTargetDown: runbook_url is not"):
        render(mixin=copy)


def readme_mixin_section() -> str:
    text = README.read_text()
    start = text.index("\n## Alerts, runbooks and the monitoring mixin\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_commands_run_with_the_jsonnet_command(tmp_path):
    """The README's shell blocks as they are, with Debian's `jsonnet` (C++ 0.18) or whichever
    is installed, in a directory that holds only the mixin (`jb install` is played by copying
    mixin/ where it vendors it), render what the mixin renders; so does its jsonnet example."""
    jsonnet = require_binary("jsonnet", "jsonnet")
    section = readme_mixin_section()
    blocks = [b for b in re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)]
    assert len(blocks) == 2, "with jsonnet-bundler, and plain"
    expected = render()
    (example,) = re.findall(r"^```jsonnet\n(.*?)^```", section, flags=re.M | re.S)
    for index, block in enumerate(blocks):
        workdir = tmp_path / f"block-{index}"
        workdir.mkdir()
        lines = block.strip().splitlines()
        vendored = [line.split()[2].split("@")[0] for line in lines if line.startswith("jb ")]
        if vendored:
            shutil.copytree(MIXIN, workdir / "vendor" / vendored[0])
        else:
            shutil.copytree(MIXIN, workdir / "mixin")
        script = "\n".join(line for line in lines if not line.startswith("jb "))
        env = {"PATH": f"{Path(jsonnet).parent}:/usr/bin:/bin"}
        proc = subprocess.run(
            ["bash", "-euc", script], cwd=workdir, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outputs = [workdir / "vastai-alerts.json", workdir / "vastai-recording-rules.json"]
        assert json.loads(outputs[0].read_text()) == expected["alerts"]
        assert json.loads(outputs[1].read_text()) == expected["rules"]
        proc = subprocess.run(
            [promtool(), "check", "rules", *map(str, outputs)], capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        if vendored:
            written = {
                p.name: json.loads(p.read_text()) for p in (workdir / "dashboards").iterdir()
            }
            assert written == expected["dashboards"]
            (workdir / "vastai.jsonnet").write_text(example)
            proc = subprocess.run(
                [jsonnet, "-J", "vendor", "vastai.jsonnet"], cwd=workdir, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            rule = json.loads(proc.stdout)
            block = re.search(r"_config\+:: \{\n(.*?)\n\s*\}", example, flags=re.S)
            assert block, "the example sets _config"
            config = dict(re.findall(r"^\s+(\w+): '(.*)',$", block.group(1), flags=re.M))
            assert set(config) == {"vastaiSelector", "runbookURLBase"}
            custom = render(config)
            assert rule["kind"] == "PrometheusRule"
            assert rule["spec"]["groups"] == custom["rules"]["groups"] + custom["alerts"]["groups"]
