"""The README as a new user's guide (issue 12): its table of contents, its flag table, and its
Prometheus scrape config, checked against the headings, the CLI and promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from exporter.cli import build_parser

from .conftest import promtool

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def test_table_of_contents_links_every_section():
    headings = re.findall(r"^## (.+)$", README, re.M)
    anchors = {anchor(h) for h in re.findall(r"^#{2,3} (.+)$", README, re.M)}
    contents = section("Contents")
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert links, "a table of contents"
    assert set(links) <= anchors, sorted(set(links) - anchors)
    listed = set(links)
    missing = [h for h in headings if h != "Contents" and anchor(h) not in listed]
    assert not missing, f"sections missing from the contents: {missing}"


def test_flag_table_lists_every_flag():
    table = section("Command line")
    flags = {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    rows = set(re.findall(r"^\| `(--[\w.-]+)", table, re.M))
    assert flags <= rows, sorted(flags - rows)
    assert {"--shard.index", "--shard.count"} <= rows


def test_ids_key_and_demo_failures_are_explained():
    for needle in (
        "vastai show endpoints",
        "vastai show workergroups",
        "discovery.enabled: true",
        "manage-keys",
        "fails one worker group on purpose",
    ):
        assert needle in README, needle


def test_grafana_import_steps():
    guide = section("Grafana: importing the dashboards")
    for needle in (
        "*Import*",
        "grafana/provisioning/dashboards/vastai.yaml",
        "/etc/grafana/provisioning/dashboards/",
        "/var/lib/grafana/dashboards/",
        "grafana/provisioning/datasources/prometheus.yaml",
        "only for the bundled compose stack",
        'grafana_dashboard: "1"',
    ):
        assert needle in guide, needle
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/vastai.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_scrape_config_snippet_is_valid(tmp_path):
    guide = section("Prometheus: scrape config and rules")
    (snippet,) = re.findall(r"```yaml\n(scrape_configs:.*?)```", guide, re.S)
    config = yaml.safe_load(snippet)
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "vastai", "VastaiExporterAbsent expects it"
    assert {"scrape_interval", "scrape_timeout"} <= job.keys()
    path = tmp_path / "prometheus.yml"
    path.write_text(snippet)
    proc = subprocess.run(
        [promtool(), "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
