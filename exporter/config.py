"""Configuration: the YAML schema, its validation, and where the API key comes from.

Validation is strict on purpose: an unknown key is almost always a typo, and a typo that is
silently ignored becomes a target that is never polled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import field, make_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .reads import ACCOUNT_READS
from .settings import MetricsSettings, PollingSettings, VastSettings, parse_section, section_schema
from .settings import parse_duration as parse_duration  # re-exported: a public helper
from .targets import Kind, Target

API_KEY_ENV = "VAST_API_KEY"


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys: the second `endpoints:` would silently win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class ConfigError(Exception):
    """A configuration problem, worded for the user: names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.detail = message
        where = ", ".join(part for part in (file, f"key {key!r}" if key else None) if part)
        super().__init__(f"{where}: {message}" if where else message)


# The sections of the file: the core ones, then each account read's, in the order of
# config.example.yaml (a test holds the example to it).
SECTIONS: dict[str, type] = {
    "vast": VastSettings,
    "polling": PollingSettings,
    "metrics": MetricsSettings,
    **{read.section: read.settings_type for read in ACCOUNT_READS},
}

_Config = make_dataclass(
    "Config",
    [
        ("vast", VastSettings, field(default_factory=VastSettings)),
        ("polling", PollingSettings, field(default_factory=PollingSettings)),
        ("metrics", MetricsSettings, field(default_factory=MetricsSettings)),
        ("targets", tuple[Target, ...], field(default=())),
        ("source", str, field(default="<defaults>")),
        *(
            (read.section, read.settings_type, field(default_factory=read.settings_type))
            for read in ACCOUNT_READS
        ),
    ],
    frozen=True,
)
_Config.__module__ = __name__
_Config.__doc__ = """A validated configuration: `vast`, `polling`, `metrics`, the targets, where
it came from, and one attribute per account read, named by its section (`discovery`, `instances`,
`billing`, ...): the fields are made from ACCOUNT_READS, so a new read adds its own."""
Config: Any = _Config  # built at import time: a type checker cannot see its read sections


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """A YAML document from a file; every problem is a ConfigError naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc.__class__.__name__}", file=source) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        detail = f": {problem}" if problem and "duplicate key" in problem else ""
        raise ConfigError(f"not valid YAML{where}{detail}", file=source) from None
    except RecursionError:
        raise ConfigError("not valid YAML: nested too deeply", file=source) from None


# What a new user most likely wants when the config file is missing.
MISSING_CONFIG_HINT = (
    "copy config.example.yaml to config.yaml and list your endpoint and worker group ids, "
    "or run with --demo to try the exporter on a simulated Vast API"
)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; every problem is a ConfigError naming file and key."""
    source = str(path)
    try:
        document = load_yaml_file(path)
    except ConfigError as exc:
        if exc.detail != "file not found":
            raise
        raise ConfigError(f"file not found ({MISSING_CONFIG_HINT})", file=source) from None
    try:
        config = parse_config(document if document is not None else {}, source)
    except ConfigError as exc:
        raise ConfigError(exc.detail, file=source, key=exc.key) from None
    key_file = config.vast.api_key_file
    if key_file and not Path(key_file).is_absolute():
        # Relative to the config file, as Prometheus does, not to the working directory.
        resolved = str(Path(path).parent / key_file)
        config = replace(config, vast=replace(config.vast, api_key_file=resolved))
    return config


def parse_config(document: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed YAML document."""
    top = check_mapping(document, "", {*SECTIONS, "endpoints", "worker_groups"})
    sections = {
        name: parse_section(cls, top.get(name), name, check_mapping, _error)
        for name, cls in SECTIONS.items()
    }
    endpoints = _parse_endpoints(top.get("endpoints"))
    groups = _parse_worker_groups(top.get("worker_groups"), endpoints)
    if not endpoints and not groups and not sections["discovery"].enabled:
        raise ConfigError(
            "no targets: list endpoints or worker groups, or enable discovery", key="endpoints"
        )
    return Config(targets=endpoints + groups, source=source, **sections)


def config_schema() -> dict[str, Any]:
    """The JSON Schema of config.yaml, from the section declarations (--config.schema)."""
    target = {"type": "integer", "minimum": 0}
    name = {"type": ["string", "integer"]}

    def target_list(description: str, properties: dict[str, Any]) -> dict[str, Any]:
        item = {
            "type": "object",
            "additionalProperties": False,
            "required": ["id"],
            "properties": properties,
        }
        return {"type": "array", "description": description, "items": item}

    properties = {
        section: section_schema(cls, (cls.__doc__ or "").strip())
        for section, cls in SECTIONS.items()
    }
    properties["endpoints"] = target_list(
        "Endpoints to poll (POST /get_endpoint_workers/)", {"id": target, "name": name}
    )
    properties["worker_groups"] = target_list(
        "Worker groups to poll (POST /get_autogroup_workers/)",
        {"id": target, "endpoint_id": target, "name": name},
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "vastai-exporter configuration",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def resolve_api_key(config: Config, environ: dict[str, str] | None = None) -> str:
    """The key from `vast.api_key_file`, else from the VAST_API_KEY environment variable."""
    environ = os.environ if environ is None else environ
    key_file = config.vast.api_key_file
    if key_file:
        where = {"file": config.source, "key": "vast.api_key_file"}
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else "cannot read it"
            raise ConfigError(f"{reason}: {key_file}", **where) from None
        if not key:
            raise ConfigError(f"{key_file} is empty", **where)
        _check_key(key, f"the key in {key_file}", where)
        return key
    key = environ.get(API_KEY_ENV, "").strip()
    where = {"file": config.source, "key": "vast.api_key_file"}
    if not key:
        message = f"no API key: set the {API_KEY_ENV} environment variable or vast.api_key_file"
        raise ConfigError(message, **where)
    _check_key(key, API_KEY_ENV, where)
    return key


def _check_key(key: str, what: str, where: dict[str, str]) -> None:
    """A key is one token: inner whitespace or control characters mean a malformed file."""
    if any(char.isspace() or not char.isprintable() for char in key):
        raise ConfigError(f"{what} contains whitespace or control characters", **where)


def check_mapping(value: Any, key: str, allowed: set[str] | None) -> dict[str, Any]:
    """A mapping (None: empty) whose keys are all in `allowed` (None: any key)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {type(value).__name__}", key=key or None)
    for name in value:
        if allowed is not None and name not in allowed:
            full = f"{key}.{name}" if key else str(name)
            if name == "api_key":
                raise ConfigError(
                    "an inline API key is refused: put it in a file named by vast.api_key_file "
                    f"or in the {API_KEY_ENV} environment variable",
                    key=full,
                )
            expected = ", ".join(sorted(allowed))
            raise ConfigError(f"unknown key (expected one of: {expected})", key=full)
    return value


def _error(message: str, key: str) -> ConfigError:
    return ConfigError(message, key=key)


def _target_id(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"expected a non-negative integer id, got {value!r}", key=key)
    return value


def _name(value: Any, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ConfigError(f"expected a string, got {value!r}", key=key)
    return str(value)


def _entries(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"expected a list, got {type(value).__name__}", key=key)
    return value


def _entries_with_ids(
    value: Any, section: str, what: str, allowed: set[str]
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """(key, entry, id) of each entry of a target list; ids must be present and unique."""
    seen: set[int] = set()
    for index, entry in enumerate(_entries(value, section)):
        key = f"{section}[{index}]"
        item = check_mapping(entry, key, allowed)
        if "id" not in item:
            raise ConfigError("missing id", key=f"{key}.id")
        target_id = _target_id(item["id"], f"{key}.id")
        if target_id in seen:
            raise ConfigError(f"duplicate {what} id {target_id}", key=f"{key}.id")
        seen.add(target_id)
        yield key, item, target_id


def _parse_endpoints(value: Any) -> tuple[Target, ...]:
    targets = []
    for key, item, target_id in _entries_with_ids(value, "endpoints", "endpoint", {"id", "name"}):
        name = _name(item.get("name"), f"{key}.name")
        targets.append(Target(Kind.ENDPOINT, target_id, name, target_id, name))
    return tuple(targets)


def _parse_worker_groups(value: Any, endpoints: tuple[Target, ...]) -> tuple[Target, ...]:
    names = {endpoint.id: endpoint.name for endpoint in endpoints}
    allowed = {"id", "endpoint_id", "name"}
    targets = []
    for key, item, target_id in _entries_with_ids(value, "worker_groups", "worker group", allowed):
        endpoint_id = item.get("endpoint_id")
        if endpoint_id is not None:
            endpoint_id = _target_id(endpoint_id, f"{key}.endpoint_id")
        name = _name(item.get("name"), f"{key}.name")
        endpoint_name = names.get(endpoint_id, "") if endpoint_id is not None else ""
        targets.append(Target(Kind.WORKER_GROUP, target_id, name, endpoint_id, endpoint_name))
    return tuple(targets)
