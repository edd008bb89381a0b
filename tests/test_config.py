"""Config validation: every bad input is a ConfigError that names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.config import (
    ConfigError,
    Target,
    load_config,
    parse_config,
    parse_duration,
    resolve_api_key,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        (30, 30.0),
        (0.25, 0.25),
        ("1m30s", 90.0),  # Prometheus' compound form
        ("1h5m", 3900.0),
        ("2s500ms", 2.5),
        ("1h0m10s", 3610.0),
        ("45", 45.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad",
    ["0s", 0, -1, "10 parsecs", "", True, None, "1d", float("inf"), "30s1m", "1m1m", "m", "0m0s"],
)
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.yaml")
    assert config.vast.api_url == "https://run.vast.ai"
    assert config.vast.timeout == 10.0
    assert (config.polling.interval, config.polling.concurrency) == (30.0, 8)
    assert config.polling.stale_after == 300.0
    assert config.vast.max_response_bytes == 32 * 2**20
    assert config.polling.max_workers_per_target == 10_000
    assert not config.discovery.enabled and config.discovery.interval == 300.0
    assert not config.instances.enabled and config.instances.interval == 60.0
    assert config.targets == (
        Target("endpoint", 123, "llama-70b", 123, "llama-70b"),
        Target("worker_group", 1001, "", 123, "llama-70b"),
    )


def test_defaults_apply_when_sections_are_missing() -> None:
    config = parse_config({"worker_groups": [{"id": 7}]})
    assert config.vast.api_url == "https://run.vast.ai"
    assert config.vast.console_url == "https://console.vast.ai"
    assert config.polling.interval == 30.0
    assert config.targets == (Target("worker_group", 7),)


@pytest.mark.parametrize(
    ("document", "key", "words"),
    [
        ({"endpoints": [{"id": 1}], "polling": {"intervall": 5}}, "polling.intervall", "unknown"),
        ({"endpoints": [{"id": 1}], "vast": {"api_key": "x"}}, "vast.api_key", "VAST_API_KEY"),
        ({"endpoints": [{"id": 1}], "api_key": "x"}, "api_key", "api_key_file"),
        ({"endpoints": [{"id": 1}], "polling": {"interval": "0s"}}, "polling.interval", "positive"),
        ({"endpoints": [{"id": 1}], "vast": {"timeout": "-1s"}}, "vast.timeout", "duration"),
        ({"endpoints": [{"id": 1}], "polling": {"stale_after": "soon"}}, "polling.stale_after", ""),
        ({"endpoints": [{"id": 1}], "polling": {"concurrency": 0}}, "polling.concurrency", ""),
        ({"endpoints": [{"id": "12a"}]}, "endpoints[0].id", "integer"),
        ({"endpoints": [{"id": 1.5}]}, "endpoints[0].id", "integer"),
        ({"endpoints": [{"id": True}]}, "endpoints[0].id", "integer"),
        ({"endpoints": [{"name": "x"}]}, "endpoints[0].id", "missing"),
        ({"endpoints": [{"id": 1}, {"id": 1}]}, "endpoints[1].id", "duplicate"),
        ({"worker_groups": [{"id": 2}, {"id": 2}]}, "worker_groups[1].id", "duplicate"),
        ({"worker_groups": [{"id": 2, "endpoint_id": "x"}]}, "worker_groups[0].endpoint_id", ""),
        ({"worker_groups": [{"id": 2, "endpiont_id": 1}]}, "worker_groups[0].endpiont_id", ""),
        ({"endpoints": {"id": 1}}, "endpoints", "list"),
        ({"endpoints": [{"id": 1}], "vast": {"api_url": "run.vast.ai"}}, "vast.api_url", "URL"),
        ({"endpoints": [{"id": 1}], "vast": "x"}, "vast", "mapping"),
        ({}, "endpoints", "no targets"),
        ({"endpoints": [{"id": 1}], "polling": {"interval": 10**400}}, "polling.interval", ""),
        (
            {"endpoints": [{"id": 1}], "vast": {"api_url": "https://u:p@run.vast.ai"}},
            "vast.api_url",
            "credentials",
        ),
        ({"endpoints": [{"id": 1}], "vast": {"api_url": "https://x y"}}, "vast.api_url", "URL"),
        ({"endpoints": [{"id": 1}], "vast": {"api_url": "https://h/?a=1"}}, "vast.api_url", ""),
    ],
)
def test_invalid_configs_name_the_key(tmp_path: Path, document: dict, key: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert caught.value.file == str(path)
    assert str(path) in str(caught.value) and key in str(caught.value)
    assert words in str(caught.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints: [\n  - id: 1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(top)


def test_api_key_from_file_then_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("  file-key\n")
    with_file = parse_config({"endpoints": [{"id": 1}], "vast": {"api_key_file": str(key_file)}})
    assert resolve_api_key(with_file, {"VAST_API_KEY": "env-key"}) == "file-key"
    without = parse_config({"endpoints": [{"id": 1}]}, "c.yaml")
    assert resolve_api_key(without, {"VAST_API_KEY": "env-key"}) == "env-key"
    with pytest.raises(ConfigError, match="VAST_API_KEY") as caught:
        resolve_api_key(without, {"VAST_API_KEY": "  "})
    assert "c.yaml" in str(caught.value)


def test_api_key_file_problems(tmp_path: Path) -> None:
    missing = parse_config({"endpoints": [{"id": 1}], "vast": {"api_key_file": "/nonexistent/k"}})
    with pytest.raises(ConfigError, match="file not found") as caught:
        resolve_api_key(missing, {"VAST_API_KEY": "env-key"})
    assert caught.value.key == "vast.api_key_file"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    config = parse_config({"endpoints": [{"id": 1}], "vast": {"api_key_file": str(empty)}})
    with pytest.raises(ConfigError, match="empty"):
        resolve_api_key(config, {})


def test_group_endpoint_name_comes_from_configured_endpoint() -> None:
    config = parse_config(
        {
            "endpoints": [{"id": 5, "name": "embed"}],
            "worker_groups": [{"id": 50, "endpoint_id": 5}, {"id": 60, "endpoint_id": 6}],
        }
    )
    assert config.targets[1] == Target("worker_group", 50, "", 5, "embed")
    assert config.targets[2] == Target("worker_group", 60, "", 6, "")


def test_duplicate_yaml_keys_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    duplicated = tmp_path / "dup.yaml"
    duplicated.write_text("endpoints: [{id: 1}]\nendpoints: [{id: 2}]\n")
    with pytest.raises(ConfigError, match="duplicate key 'endpoints'"):
        load_config(duplicated)
    deep = tmp_path / "deep.yaml"
    deep.write_text("endpoints: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):
        load_config(deep)


def test_key_with_inner_whitespace_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("first-line\nsecond-line\n")
    config = parse_config({"endpoints": [{"id": 1}], "vast": {"api_key_file": str(key_file)}})
    with pytest.raises(ConfigError, match="whitespace or control") as caught:
        resolve_api_key(config, {})
    assert "first-line" not in str(caught.value)
    with pytest.raises(ConfigError, match="VAST_API_KEY contains"):
        resolve_api_key(parse_config({"endpoints": [{"id": 1}]}), {"VAST_API_KEY": "a\x1bb"})


def test_relative_key_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text("k-123\n")
    path = tmp_path / "config.yaml"
    path.write_text("vast: {api_key_file: secrets/key}\nendpoints: [{id: 1}]\n")
    config = load_config(path)
    assert config.vast.api_key_file == str(tmp_path / "secrets" / "key")
    assert resolve_api_key(config, {}) == "k-123"


def test_the_json_schema_follows_the_declarations() -> None:
    from exporter.config import SECTIONS, config_schema

    schema = config_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {*SECTIONS, "endpoints", "worker_groups"}
    polling = schema["properties"]["polling"]
    assert polling["properties"]["interval"]["default"] == 30.0
    assert polling["properties"]["concurrency"] == {
        "type": "integer",
        "minimum": 1,
        "description": "Requests in flight at most",
        "default": 8,
    }
    assert (
        "at least 1s" in schema["properties"]["discovery"]["properties"]["interval"]["description"]
    )
    assert schema["properties"]["worker_groups"]["items"]["required"] == ["id"]
    # Every key the example config uses is declared, and nothing it declares is unknown.
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    for section, values in example.items():
        if section in SECTIONS:
            assert set(values) <= set(schema["properties"][section]["properties"]), section


def test_the_schema_validates_the_example_config() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from exporter.config import config_schema

    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    jsonschema.validate(example, config_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"polling": {"intervall": "5s"}}, config_schema())
