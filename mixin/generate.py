#!/usr/bin/env python3
"""Copy the rule file and the dashboards into the monitoring mixin, which reads them from there.

    .venv/bin/python mixin/generate.py           # rewrite the copies
    .venv/bin/python mixin/generate.py --check   # exit 1 if they are not current

- mixin/rules/vastai-rules.json: the document of deploy/prometheus/vastai-rules.yaml as JSON,
  which every jsonnet imports as it is (Debian 12's jsonnet 0.18 has a std.parseYaml that fails
  on the file's block scalars), with a key saying where it comes from.
- mixin/dashboards/*.json: grafana/dashboards/*.json, byte for byte.

The mixin must be whole on its own: jsonnet-bundler vendors only the mixin/ directory, where an
import of ../deploy/... would not resolve. Edit the sources, never the copies; tests/test_mixin.py
checks that the copies are current and that the mixin renders the sources unchanged.
Needs PyYAML (a dependency of the exporter).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MIXIN = ROOT / "mixin"
RULES = ROOT / "deploy" / "prometheus" / "vastai-rules.yaml"
DASHBOARDS = ROOT / "grafana" / "dashboards"
RULES_COPY = MIXIN / "rules" / "vastai-rules.json"
DASHBOARD_COPIES = MIXIN / "dashboards"

COPIED = "by mixin/generate.py from deploy/prometheus/vastai-rules.yaml: edit that and rerun"


def rendered() -> dict[Path, str]:
    """Every copy and the text it must hold."""
    rules = {"generated": COPIED, **yaml.safe_load(RULES.read_text())}
    copies = {RULES_COPY: json.dumps(rules, indent=2, ensure_ascii=False) + "\n"}
    for path in sorted(DASHBOARDS.glob("*.json")):
        copies[DASHBOARD_COPIES / path.name] = path.read_text()
    return copies


def strays(copies: dict[Path, str]) -> list[Path]:
    """Dashboard copies whose source is gone."""
    return sorted(set(DASHBOARD_COPIES.glob("*.json")) - set(copies))


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        print(__doc__, file=sys.stderr)
        return 2
    copies = rendered()
    stale = [p for p, text in copies.items() if not p.exists() or p.read_text() != text]
    gone = strays(copies)
    if check:
        if stale or gone:
            names = ", ".join(str(p.relative_to(ROOT)) for p in stale + gone)
            print(f"not current: {names}; run python3 mixin/generate.py", file=sys.stderr)
            return 1
        return 0
    for path in stale:
        path.write_text(copies[path])
        print(f"wrote {path.relative_to(ROOT)}")
    for path in gone:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
