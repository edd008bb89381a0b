"""docs/runbooks.md against the alerts of deploy/prometheus/vastai-rules.yaml.

One section per alert, in the order of the rules file, and nothing else; each alert's
`runbook_url` is the runbooks' address plus the anchor GitHub gives the section's heading; each
section says what the alert means, how to confirm it (PromQL that parses and names only series
the exporter or the rules make, the landing page, a command of Vast's CLI) and what to do.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from .conftest import promtool
from .test_dashboards import metric_names

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RULES_FILE = ROOT / "deploy" / "prometheus" / "vastai-rules.yaml"
README = ROOT / "README.md"
# Where the rules file's runbook_url annotations point (the mixin's default runbookURLBase).
RUNBOOK_BASE = "https://github.com/vastai-exporter/vastai-exporter/blob/main/docs/runbooks.md"
PARTS = ("**What it means.**", "**How to confirm.**", "**What to do.**")


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def records() -> set[str]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def sections() -> dict[str, str]:
    """Heading text -> body of every level-2 section (code fences cannot hide a heading)."""
    text = re.sub(r"^```.*?^```", "", RUNBOOKS.read_text(), flags=re.S | re.M)
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def promql_snippets(body: str) -> list[str]:
    """The code spans of a section's `- PromQL:` bullet (continuation lines included)."""
    bullet = re.search(r"^- PromQL:(.*?)(?=^- |^\*\*|\Z)", body, flags=re.S | re.M)
    assert bullet, "no PromQL bullet"
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", bullet.group(1))]


def exported_names() -> set[str]:
    """Every metric name of the README's metric table (histograms with their series)."""
    names = set(re.findall(r"^\| `(\w+)` \|", README.read_text(), flags=re.M))
    for name in list(names):
        names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def test_one_section_per_alert_in_the_order_of_the_rules():
    assert list(sections()) == [alert["alert"] for alert in alerts()]


def test_every_runbook_url_resolves_to_its_section():
    assert RUNBOOK_BASE.endswith("/blob/main/docs/runbooks.md")
    assert (ROOT / RUNBOOK_BASE.split("/blob/main/", 1)[1]) == RUNBOOKS
    anchors = {github_anchor(heading): heading for heading in sections()}
    assert len(anchors) == len(sections()), "two sections with one anchor"
    for alert in alerts():
        url = alert["annotations"].get("runbook_url", "")
        base, _, anchor = url.partition("#")
        assert base == RUNBOOK_BASE, alert["alert"]
        assert anchors.get(anchor) == alert["alert"], f"{alert['alert']}: #{anchor}"


def test_every_section_says_what_it_means_how_to_confirm_and_what_to_do():
    for name, body in sections().items():
        positions = [body.find(part) for part in PARTS]
        assert -1 not in positions and positions == sorted(positions), f"{name}: {PARTS}"
        confirm = " ".join(body[positions[1] : positions[2]].split())
        assert "landing page" in confirm, f"{name}: the landing page"
        assert re.search(r"`vastai [a-z]", confirm), f"{name}: a command of Vast's CLI"
        severity = next(a["labels"]["severity"] for a in alerts() if a["alert"] == name)
        duration = next(a.get("for", "0s") for a in alerts() if a["alert"] == name)
        minutes = int(duration.removesuffix("m"))
        unit = "minute" if minutes == 1 else "minutes"
        assert body.lstrip().startswith(f"*{severity}, after {minutes} {unit}*"), name


def test_runbook_promql_parses_and_names_known_series(tmp_path):
    known = exported_names() | records() | {"up"}
    queries = []
    for name, body in sections().items():
        snippets = promql_snippets(body)
        assert snippets, name
        for query in snippets:
            unknown = metric_names(query) - known
            assert not unknown, f"{name}: {query}: {sorted(unknown)}"
            queries.append(query)
    rules = {
        "groups": [
            {
                "name": "runbooks",
                "rules": [
                    {"record": f"runbook:query_{i}:check", "expr": query}
                    for i, query in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "runbook-queries.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\n".join(queries)
