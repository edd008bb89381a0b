"""Config sections declared once: each setting's type, default, bounds and help in one place.

A section is a frozen dataclass whose fields are made with `setting(...)`. From that one
declaration come the parser (`parse_section`: unknown keys refused, every error naming its
key), the defaults, and the JSON Schema of the file (`section_schema`, for
`vastai-exporter --config.schema`). The two sections every run has, `vast` and `polling`, are
declared here; each account read declares its own beside its code (`exporter/reads/`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

S = TypeVar("S")

_PART = r"(\d+(?:\.\d+)?)(ms|h|m|s)"
_DURATION_RE = re.compile(rf"^(?:{_PART})+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNIT_ORDER = ("h", "m", "s", "ms")
DURATION_PATTERN = r"^\s*((\d+(\.\d+)?(h|m|s|ms))+|\d+(\.\d+)?)\s*$"


class SettingError(ValueError):
    """A bad value for one setting; the section parser adds the key."""


def parse_duration(value: Any) -> float:
    """Seconds from `500ms`, `10s`, `5m`, `1h`, Prometheus' compound `1m30s`, or a plain
    number; positive and finite only."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)  # OverflowError for absurd integers: reported by the caller
    elif isinstance(value, str) and _DURATION_RE.match(text := re.sub(r"\s+", "", value)):
        parts = re.findall(_PART, text)
        units = [unit for _, unit in parts]
        if len(set(units)) != len(units) or units != sorted(units, key=_UNIT_ORDER.index):
            raise SettingError(f"units must go from largest to smallest, once each: {value!r}")
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
        seconds = float(value)
    else:
        raise SettingError(
            f"expected a duration such as 500ms, 10s, 5m, 1h or 1m30s, got {value!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise SettingError(f"must be a positive duration, got {value!r}")
    return seconds


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
        raise SettingError(f"expected a size such as 32MiB or a number of bytes, got {value!r}")
    if size <= 0:
        raise SettingError(f"must be a positive size, got {value!r}")
    return size


def parse_url(value: Any) -> str:
    """An http(s) base URL: no credentials (the key goes in a header), no query, no spaces."""
    if not isinstance(value, str) or re.search(r"\s", value):
        raise SettingError(f"expected an http(s) URL, got {value!r}")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(f"expected an http(s) URL, got {value!r}")
    if parts.username is not None or parts.password is not None:
        raise SettingError("credentials in the URL are refused; the key goes in api_key_file")
    if parts.query or parts.fragment:
        raise SettingError(f"expected a base URL without query or fragment, got {value!r}")
    return value.rstrip("/")


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingError(f"expected true or false, got {value!r}")
    return value


def parse_positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingError(f"must be a positive integer, got {value!r}")
    return value


def parse_rate(value: Any) -> float:
    """Requests per second: 0 (no limit) or a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingError(f"expected a number of requests per second, got {value!r}")
    try:
        rate = float(value)
    except OverflowError:
        raise SettingError(f"too large: {value!r}") from None
    if not math.isfinite(rate) or rate < 0:
        raise SettingError(f"must be 0 (no limit) or a positive number, got {value!r}")
    return rate


def parse_regex(value: Any) -> str:
    if not isinstance(value, str):
        raise SettingError(f"expected a regular expression, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise SettingError(f"not a valid regular expression: {exc}") from None
    return value


def parse_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingError("expected a file path")
    return value


# A metric family's name, or a glob of names (fnmatch: *, ?, [...]).
METRIC_PATTERN = r"^[a-zA-Z_:*?\[\]!][a-zA-Z0-9_:*?\[\]!-]*$"


def parse_metric_patterns(value: Any) -> tuple[str, ...]:
    """A list of metric family names or globs (`vastai_worker_instance_*`)."""
    if not isinstance(value, list):
        raise SettingError(f"expected a list of metric names or globs, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not re.match(METRIC_PATTERN, item):
            raise SettingError(
                f"expected a metric name or a glob such as vastai_worker_*, got {item!r}"
            )
    return tuple(value)


@dataclass(frozen=True)
class ValueType:
    """A type of setting: how a YAML value is read, and its JSON Schema."""

    parse: Callable[[Any], Any]
    schema: dict[str, Any]


DURATION = ValueType(
    parse_duration,
    {"type": ["string", "number"], "pattern": DURATION_PATTERN, "examples": ["30s", "1m30s"]},
)
SIZE = ValueType(parse_size, {"type": ["string", "integer"], "examples": ["32MiB", 1048576]})
URL = ValueType(parse_url, {"type": "string", "format": "uri", "pattern": "^https?://"})
BOOL = ValueType(parse_bool, {"type": "boolean"})
POSITIVE_INT = ValueType(parse_positive_int, {"type": "integer", "minimum": 1})
RATE = ValueType(parse_rate, {"type": "number", "minimum": 0})
REGEX = ValueType(parse_regex, {"type": "string", "format": "regex"})
PATH = ValueType(parse_path, {"type": "string", "minLength": 1})
METRIC_PATTERNS = ValueType(
    parse_metric_patterns,
    {
        "type": "array",
        "items": {"type": "string", "pattern": METRIC_PATTERN},
        "examples": [["vastai_worker_instance_*", "python_*"]],
    },
)


@dataclass(frozen=True)
class Minimum:
    """A lower bound beyond what the kind checks, with the reason given to the user."""

    value: float
    message: str


def setting(
    default: Any, kind: ValueType, doc: str, minimum: Minimum | None = None, nullable: bool = False
) -> Any:
    """A dataclass field that is a setting: its default, kind, help text and bound."""
    metadata = {"kind": kind, "doc": doc, "minimum": minimum, "nullable": nullable}
    return field(default=default, metadata=metadata)


def parse_section(
    cls: type[S],
    value: Any,
    prefix: str,
    check_mapping: Callable[[Any, str, set[str]], dict[str, Any]],
    error: Callable[[str, str], Exception],
) -> S:
    """An instance of the section dataclass `cls` from its YAML mapping (None: defaults).

    `check_mapping` refuses unknown keys; `error(message, key)` builds the exception raised
    for a bad value, with the full key (`prefix.name`).
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    section = check_mapping(value, prefix, {f.name for f in fields})
    values = {}
    for spec in fields:
        if spec.name not in section:
            continue
        raw, key = section[spec.name], f"{prefix}.{spec.name}"
        if raw is None and spec.metadata["nullable"]:
            values[spec.name] = None
            continue
        try:
            parsed = spec.metadata["kind"].parse(raw)
        except (ValueError, OverflowError) as exc:
            raise error(str(exc), key) from None
        minimum: Minimum | None = spec.metadata["minimum"]
        if minimum is not None and parsed < minimum.value:
            raise error(minimum.message, key)
        values[spec.name] = parsed
    return cls(**values)


def section_schema(cls: type, description: str) -> dict[str, Any]:
    """The JSON Schema of one section, from the same declaration the parser reads."""
    properties = {}
    for spec in dataclasses.fields(cls):
        kind: ValueType = spec.metadata["kind"]
        schema = dict(kind.schema)
        if spec.metadata["nullable"]:
            schema["type"] = [*_types(schema), "null"]
        schema["description"] = spec.metadata["doc"]
        if spec.default is not None and spec.default is not dataclasses.MISSING:
            schema["default"] = spec.default
        minimum: Minimum | None = spec.metadata["minimum"]
        if minimum is not None:
            schema["description"] += f" ({minimum.message})"
        properties[spec.name] = schema
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
    }


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema["type"]
    return list(kind) if isinstance(kind, list) else [kind]


# A path Vast rate-limits per key: reading it more than once a second only earns 429s.
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
class MetricsSettings:
    """What /metrics leaves out: a series budget, applied on reload."""

    exclude: tuple[str, ...] = setting(
        (),
        METRIC_PATTERNS,
        "Metric families never rendered: names as exposed (a counter with _total) or globs",
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
