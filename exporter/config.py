"""Configuration: the YAML schema, its validation, and where the API key comes from.

Validation is strict on purpose: an unknown key is almost always a typo, and a typo that is
silently ignored becomes a target that is never polled.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

API_KEY_ENV = "VAST_API_KEY"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


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


@dataclass(frozen=True)
class VastSettings:
    api_url: str = "https://run.vast.ai"
    console_url: str = "https://console.vast.ai"
    api_key_file: str | None = None
    timeout: float = 10.0
    max_response_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class PollingSettings:
    interval: float = 30.0
    concurrency: int = 8
    stale_after: float = 300.0
    max_workers_per_target: int = 10_000
    max_requests_per_second: float = 0.0  # worker-list requests; 0: no limit


@dataclass(frozen=True)
class DiscoverySettings:
    """Account discovery: poll every endpoint and worker group the account listing shows."""

    enabled: bool = False
    interval: float = 300.0
    include: str | None = None  # regex on endpoint_name
    exclude: str | None = None

    def wants(self, endpoint_name: str) -> bool:
        if self.include is not None and not re.search(self.include, endpoint_name):
            return False
        return self.exclude is None or not re.search(self.exclude, endpoint_name)


@dataclass(frozen=True)
class InstancesSettings:
    """The account's v1 instance list: each worker's price, GPU and memory."""

    enabled: bool = False
    interval: float = 60.0
    page_interval: float = 1.0  # Vast allows one request a second on this path


@dataclass(frozen=True)
class BillingSettings:
    """The account's credit and today's charges (needs a key with billing read permission)."""

    enabled: bool = False
    interval: float = 300.0


@dataclass(frozen=True)
class Target:
    """One thing to poll: an endpoint or a worker group.

    `endpoint_id`/`endpoint_name` are what this target's workers are labelled with; for a worker
    group they come from its configured `endpoint_id` and that endpoint's configured name.
    """

    kind: str  # "endpoint" or "worker_group"; "listing" for the account listing itself
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


def parse_duration(value: Any) -> float:
    """Seconds from `500ms`, `10s`, `5m`, `1h` or a plain number; positive and finite only."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)  # OverflowError for absurd integers: reported by the caller
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 500ms, 10s, 5m or 1h, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


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
    sections = {
        "vast",
        "polling",
        "discovery",
        "instances",
        "billing",
        "endpoints",
        "worker_groups",
    }
    top = check_mapping(document, "", sections)
    vast = _parse_vast(top.get("vast"))
    polling = _parse_polling(top.get("polling"))
    discovery = _parse_discovery(top.get("discovery"))
    endpoints = _parse_endpoints(top.get("endpoints"))
    groups = _parse_worker_groups(top.get("worker_groups"), endpoints)
    if not endpoints and not groups and not discovery.enabled:
        raise ConfigError(
            "no targets: list endpoints or worker groups, or enable discovery", key="endpoints"
        )
    instances = _parse_instances(top.get("instances"))
    billing = _parse_billing(top.get("billing"))
    return Config(vast, polling, discovery, endpoints + groups, source, instances, billing)


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


def _field(key: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except (ValueError, OverflowError) as exc:
        raise ConfigError(str(exc), key=key) from None


def _parse_vast(value: Any) -> VastSettings:
    keys = {"api_url", "console_url", "api_key_file", "timeout", "max_response_bytes"}
    section = check_mapping(value, "vast", keys)
    defaults = VastSettings()
    key_file = section.get("api_key_file")
    if key_file is not None and (not isinstance(key_file, str) or not key_file.strip()):
        raise ConfigError("expected a file path", key="vast.api_key_file")
    return VastSettings(
        api_url=_field("vast.api_url", _url, section.get("api_url", defaults.api_url)),
        console_url=_field(
            "vast.console_url", _url, section.get("console_url", defaults.console_url)
        ),
        api_key_file=key_file,
        timeout=_duration(section, "vast", "timeout", defaults.timeout),
        max_response_bytes=_field(
            "vast.max_response_bytes",
            parse_size,
            section.get("max_response_bytes", defaults.max_response_bytes),
        ),
    )


def _parse_polling(value: Any) -> PollingSettings:
    keys = {
        "interval",
        "concurrency",
        "stale_after",
        "max_workers_per_target",
        "max_requests_per_second",
    }
    section = check_mapping(value, "polling", keys)
    defaults = PollingSettings()
    return PollingSettings(
        interval=_duration(section, "polling", "interval", defaults.interval),
        concurrency=_positive_int(section, "concurrency", defaults.concurrency),
        stale_after=_duration(section, "polling", "stale_after", defaults.stale_after),
        max_workers_per_target=_positive_int(
            section, "max_workers_per_target", defaults.max_workers_per_target
        ),
        max_requests_per_second=_rate(section.get("max_requests_per_second", 0)),
    )


def _rate(value: Any) -> float:
    """A request rate: a finite number of requests per second, 0 (no limit) or more."""
    key = "polling.max_requests_per_second"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number of requests per second, got {value!r}", key=key)
    try:
        rate = float(value)
    except OverflowError:
        raise ConfigError(f"too large: {value!r}", key=key) from None
    if not math.isfinite(rate) or rate < 0:
        raise ConfigError(f"must be 0 (no limit) or a positive number, got {value!r}", key=key)
    return rate


def _parse_instances(value: Any) -> InstancesSettings:
    section = check_mapping(value, "instances", {"enabled", "interval", "page_interval"})
    enabled, interval = _listing_schedule(section, "instances", InstancesSettings.interval)
    page_interval = _duration(section, "instances", "page_interval", 1.0)
    if page_interval < 1:
        raise ConfigError(
            "must be at least 1s (Vast allows one request a second on the instance list)",
            key="instances.page_interval",
        )
    return InstancesSettings(enabled, interval, page_interval)


def _parse_billing(value: Any) -> BillingSettings:
    section = check_mapping(value, "billing", {"enabled", "interval"})
    enabled, interval = _listing_schedule(section, "billing", BillingSettings.interval)
    if interval < 60:
        raise ConfigError("must be at least 1m (charges change slowly)", key="billing.interval")
    return BillingSettings(enabled, interval)


def _listing_schedule(section: dict[str, Any], name: str, default: float) -> tuple[bool, float]:
    """`enabled` and `interval` (at least 1 s: Vast rate-limits listings) of a listing section."""
    enabled = section.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"expected true or false, got {enabled!r}", key=f"{name}.enabled")
    interval = _duration(section, name, "interval", default)
    if interval < 1:
        raise ConfigError("must be at least 1s (Vast rate-limits it)", key=f"{name}.interval")
    return enabled, interval


def _parse_discovery(value: Any) -> DiscoverySettings:
    section = check_mapping(value, "discovery", {"enabled", "interval", "include", "exclude"})
    enabled, interval = _listing_schedule(section, "discovery", DiscoverySettings.interval)
    patterns = {}
    for name in ("include", "exclude"):
        pattern, key = section.get(name), f"discovery.{name}"
        if pattern is None:
            continue
        if not isinstance(pattern, str):
            raise ConfigError(f"expected a regular expression, got {pattern!r}", key=key)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"not a valid regular expression: {exc}", key=key) from None
        patterns[name] = pattern
    return DiscoverySettings(enabled, interval, **patterns)


def _positive_int(section: dict[str, Any], name: str, default: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive integer, got {value!r}", key=f"polling.{name}")
    return value


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}
_SIZE_UNITS.update({"KiB": 2**10, "MiB": 2**20, "GiB": 2**30})


def parse_size(value: Any) -> int:
    """Bytes from an integer or `512KiB`, `32MiB`, `1GB`; positive only."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a size such as 32MiB or a number of bytes, got {value!r}")
    if size <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return size


def _duration(section: dict[str, Any], prefix: str, name: str, default: float) -> float:
    if name not in section:
        return default
    return _field(f"{prefix}.{name}", parse_duration, section[name])


def _url(value: Any) -> str:
    """An http(s) base URL: no credentials (the key goes in a header), no query, no spaces."""
    if not isinstance(value, str) or re.search(r"\s", value):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are refused; the key goes in api_key_file")
    if parts.query or parts.fragment:
        raise ValueError(f"expected a base URL without query or fragment, got {value!r}")
    return value.rstrip("/")


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
        targets.append(Target("endpoint", target_id, name, target_id, name))
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
        targets.append(Target("worker_group", target_id, name, endpoint_id, endpoint_name))
    return tuple(targets)
