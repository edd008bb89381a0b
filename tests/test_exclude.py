"""metrics.exclude: a series budget. Excluded families are never rendered, whichever renderer
writes them (the fast per-worker one, prometheus-client's, the per-scrape process families),
and a reload applies a new list."""

from __future__ import annotations

import re

import pytest

from exporter.config import ConfigError, config_schema, parse_config
from exporter.metrics import Exclusion

from .fakevast import FakeVast, instance, worker, workers
from .harness import fast_config

pytestmark = pytest.mark.virtual_time


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))


def test_exclusion_matches_names_as_exposed_and_globs() -> None:
    excluded = Exclusion(("vastai_worker_instance_*", "vastai_target_poll_errors_total", "x"))
    assert excluded("vastai_worker_instance_info") and excluded("vastai_worker_instance_status")
    assert excluded("vastai_target_poll_errors")  # a counter's family, named with its _total
    assert excluded("x") and not excluded("xy") and not excluded("vastai_worker_cur_load")
    assert not Exclusion()("anything")


def test_the_setting_is_validated_naming_the_key() -> None:
    base = {"endpoints": [{"id": 1}]}
    assert parse_config(base).metrics.exclude == ()
    config = parse_config({**base, "metrics": {"exclude": ["python_*", "vastai_worker_gpu_*"]}})
    assert config.metrics.exclude == ("python_*", "vastai_worker_gpu_*")
    for bad in ("python_*", ["bad name"], [3], [""]):
        with pytest.raises(ConfigError) as caught:
            parse_config({**base, "metrics": {"exclude": bad}})
        assert caught.value.key == "metrics.exclude"
    schema = config_schema()["properties"]["metrics"]["properties"]["exclude"]
    assert schema["type"] == "array" and schema["default"] == ()


async def test_excluded_families_vanish_and_a_reload_brings_them_back(
    fake_vast: FakeVast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1), worker(2, status="loading")))
    fake_vast.set_instances([instance(1, "RTX 4090", 0.4), instance(2, "A100", 1.2)])
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": 10, "name": "chat"}],
        instances={"enabled": True, "interval": "1s"},
    )
    config["vast"]["console_url"] = fake_vast.url
    excluded = [
        "vastai_worker_instance_*",  # a view's per-worker families (fast renderer)
        "vastai_worker_cur_load",  # a worker figure (fast renderer)
        "vastai_worker_status",  # a labelled per-worker family (fast renderer)
        "vastai_target_poll_errors_total",  # a counter (prometheus-client)
        "process_*",  # the per-scrape families
    ]
    config["metrics"] = {"exclude": excluded}
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(
        lambda s: any(sample[0] == "vastai_worker_billed_dollars_per_hour" for sample in s)
    )
    for openmetrics in (False, True):
        accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
        text = (await exporter.get("/metrics", headers={"Accept": accept}))[1]
        names = families(text)
        assert "vastai_worker_billed_dollars_per_hour" in names  # not excluded
        assert "vastai_worker_gpu_utilization_ratio" in names
        assert "vastai_target_up" in names and "python_info" in names
        left = {name for name in names if Exclusion(tuple(excluded))(name)}
        assert left == set(), left
        assert "vastai_worker_instance_info" not in text and "process_cpu_seconds" not in text
    # A reload with another list applies at once: the families come back, others go.
    config["metrics"] = {"exclude": ["python_*"]}
    exporter.write_config(config)
    assert await exporter.reload() is None
    samples = await exporter.wait_for_metrics(
        lambda s: any(sample[0] == "vastai_worker_instance_info" for sample in s)
    )
    names = {sample[0] for sample in samples}
    assert {"vastai_worker_cur_load", "vastai_worker_status"} <= names
    assert "process_cpu_seconds_total" in names
    assert not any(name.startswith("python_") for name in names)


def test_the_readmes_lean_list_drops_nothing_the_dashboards_rules_or_runbooks_use() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    section = readme[readme.index("### Series budget") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n", 10)]
    lean = Exclusion(tuple(yaml.safe_load(block)["metrics"]["exclude"]))
    used = "".join(
        path.read_text()
        for pattern in ("grafana/dashboards/*.json", "deploy/prometheus/*.yaml", "docs/*.md")
        for path in root.glob(pattern)
    )
    names = set(re.findall(r"\bvastai_worker_[a-z_]+", used))
    assert names and {name for name in names if lean(name)} == set()
    assert len(lean.patterns) == 9
