"""Configuration: the YAML schema, its validation, and where the API key comes from.

Validation is strict on purpose: an unknown key is almost always a typo, and a typo that is
silently ignored becomes a target that is never polled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from .settings import (
    BOOL,
    DURATION,
    PATH,
    POSITIVE_INT,
    RATE,
    REGEX,
    SIZE,
    URL,
    Minimum,
    parse_section,
    section_schema,
    setting,
)
from .settings import parse_duration as parse_duration  # re-exported: a public helper

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


# A listing is rate-limited per key: reading it more than once a second only earns 429s.
ONCE_A_SECOND = Minimum(1.0, "must be at least 1s (Vast rate-limits it)")


@dataclass(frozen=True)
class VastSettings:
    """Where the Vast API is, and how the exporter talks to it."""

    api_url: str = setting("https://run.vast.ai", URL, "Host of the worker-list calls")
    console_url: str = setting(
        "https://console.vast.ai", URL, "Host of the account reads (listing, instances, billing)"
    )
    api_key_file: str | None = setting(
        None, PATH, "File holding the API key; else the VAST_API_KEY environment variable"
    )
    timeout: float = setting(10.0, DURATION, "Timeout of one request")
    max_response_bytes: int = setting(
        32 * 1024 * 1024, SIZE, "A larger answer is refused (invalid_response), unread"
    )


@dataclass(frozen=True)
class PollingSettings:
    """How the worker lists are polled."""

    interval: float = setting(30.0, DURATION, "Time between two polls of one target")
    concurrency: int = setting(8, POSITIVE_INT, "Requests in flight at most")
    stale_after: float = setting(
        300.0, DURATION, "How long a failing target's last-known workers stay exported"
    )
    max_workers_per_target: int = setting(
        10_000, POSITIVE_INT, "Workers past this many in one answer are dropped"
    )
    max_requests_per_second: float = setting(
        0.0, RATE, "Worker-list requests per second at most, over all targets; 0: no limit"
    )


@dataclass(frozen=True)
class DiscoverySettings:
    """Account discovery: poll every endpoint and worker group the account listing shows."""

    enabled: bool = setting(False, BOOL, "Poll what the account listing shows")
    interval: float = setting(
        300.0, DURATION, "How often the account listing is read", ONCE_A_SECOND
    )
    include: str | None = setting(
        None, REGEX, "Only endpoints whose endpoint_name matches", nullable=True
    )
    exclude: str | None = setting(
        None, REGEX, "No endpoint whose endpoint_name matches", nullable=True
    )

    def wants(self, endpoint_name: str) -> bool:
        if self.include is not None and not re.search(self.include, endpoint_name):
            return False
        return self.exclude is None or not re.search(self.exclude, endpoint_name)


@dataclass(frozen=True)
class InstancesSettings:
    """The account's v1 instance list: each worker's price, GPU and memory."""

    enabled: bool = setting(False, BOOL, "Read the v1 instance list for the polled workers")
    interval: float = setting(
        60.0,
        DURATION,
        "A read starts this often, or when the previous one ends if later",
        ONCE_A_SECOND,
    )
    page_interval: float = setting(
        1.0,
        DURATION,
        "Pages of a read at least this far apart",
        Minimum(1.0, "must be at least 1s (Vast allows one request a second on the instance list)"),
    )


@dataclass(frozen=True)
class BillingSettings:
    """The account's credit and today's charges (needs a key with billing read permission)."""

    enabled: bool = setting(False, BOOL, "Read the credit and today's charges")
    interval: float = setting(
        300.0,
        DURATION,
        "How often the billing read runs",
        Minimum(60.0, "must be at least 1m (charges change slowly)"),
    )


# Section name -> its declaration, in the order of config.example.yaml.
SECTIONS: dict[str, type] = {
    "vast": VastSettings,
    "polling": PollingSettings,
    "discovery": DiscoverySettings,
    "instances": InstancesSettings,
    "billing": BillingSettings,
}


class Kind(StrEnum):
    """What a target is: polled for workers, or one of the periodic account reads."""

    ENDPOINT = "endpoint"
    WORKER_GROUP = "worker_group"
    LISTING = "listing"  # the account listing (discovery)
    INSTANCES = "instances"  # the v1 instance list
    BILLING = "billing"  # credit and today's charges


@dataclass(frozen=True)
class Target:
    """One thing to poll: an endpoint or a worker group.

    `endpoint_id`/`endpoint_name` are what this target's workers are labelled with; for a worker
    group they come from its configured `endpoint_id` and that endpoint's configured name.
    """

    kind: Kind
    id: int | str
    name: str = ""
    endpoint_id: int | None = None
    endpoint_name: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.id}"


@dataclass(frozen=True)
class Config:
    vast: VastSettings = field(default_factory=VastSettings)
    polling: PollingSettings = field(default_factory=PollingSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    targets: tuple[Target, ...] = ()
    source: str = "<defaults>"
    instances: InstancesSettings = field(default_factory=InstancesSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)


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
