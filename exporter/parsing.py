"""Turning Vast worker-list responses into worker records, and naming what went wrong.

The API is loose in practice: two response shapes, errors with HTTP 200, numbers sent as strings,
nulls anywhere. Everything here is forgiving about a single field and strict about the shape.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .fields import (
    ENDPOINT_FIELDS,
    GROUP_FIELDS,
    INSTANCE_FIELDS,
    WORKER_FIELDS,
    Field,
    parse_number,
)

# Every way a poll can fail; one of these is the `reason` label of the errors counter.
REASONS = (
    "auth",
    "not_found",
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "api_error",
    "invalid_response",
)

MAX_MESSAGE_CHARS = 200


class PollError(Exception):
    """A failed poll, classified by `reason` (one of REASONS)."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class NotReady(Exception):
    """HTTP 200 with `{"error_msg": ...}`: Vast cannot list this target's workers yet.

    Vast's SDK (vast-cli vastai/serverless/client/client.py, get_endpoint_workers) treats it as
    an empty list: "Endpoint may not be ready for query. Check credentials or wait a few
    minutes". A fresh or scaled-from-zero endpoint answers so; it is not an outage.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The metric suffixes of WORKER_FIELDS, in its order: the order of every Worker's `figures`.
WORKER_METRICS = tuple(entry.metric for entry in WORKER_FIELDS)
FIGURES = struct.Struct(f"={len(WORKER_FIELDS)}d")  # packs and unpacks a Worker's figures
_WORKER_INDEX = {metric: index for index, metric in enumerate(WORKER_METRICS)}
_WORKER_READERS = tuple((entry.api, entry.convert) for entry in WORKER_FIELDS)
MISSING = math.nan  # a figure the answer did not carry as a usable number


class Worker(NamedTuple):
    """One worker as reported by one target: its id, lower-cased status and numeric figures.

    `figures` packs one double per WORKER_FIELDS entry, in its order (FIGURES), NaN (MISSING)
    where the answer had no usable number; parse_number never yields NaN, so NaN means only
    that. Packed bytes take 8 bytes a field where a dict of floats took about 50, compare as
    bytes (two parses of one answer are equal) and, unlike an array, are no object the garbage
    collector walks. `value()` and `values` read the figures by metric suffix.
    """

    id: str
    status: str | None
    figures: bytes  # FIGURES.pack(...), aligned with WORKER_FIELDS
    deployment: str | None = None  # deployment_version_id, when not null

    def value(self, metric: str) -> float | None:
        """The figure of one WORKER_FIELDS metric suffix, None when missing."""
        (number,) = _DOUBLE.unpack_from(self.figures, 8 * _WORKER_INDEX[metric])
        return None if number != number else number

    @property
    def values(self) -> dict[str, float]:
        """Metric suffix -> value of every figure the worker has (a new dict at each call)."""
        figures = FIGURES.unpack(self.figures)
        return {metric: v for metric, v in zip(WORKER_METRICS, figures, strict=True) if v == v}


_DOUBLE = struct.Struct("=d")


def pack_figures(values: Mapping[str, float]) -> bytes:
    """Figures by metric suffix (as `Worker.values` gives them), packed; MISSING elsewhere."""
    return FIGURES.pack(*(values.get(metric, MISSING) for metric in WORKER_METRICS))


def read_figures(item: dict[str, Any]) -> bytes:
    """The WORKER_FIELDS figures of one worker object, packed, MISSING where unusable.

    Run for every worker of every poll on the event loop, so the common cases (null, a finite
    float for a plain number field) are handled inline, without a call."""
    get = item.get
    figures = []
    for api, convert in _WORKER_READERS:
        value = get(api)
        if value is None:
            figures.append(MISSING)
        elif convert is parse_number and type(value) is float:
            figures.append(value if value - value == 0.0 else MISSING)  # inf - inf is NaN
        else:
            number = convert(value)
            figures.append(MISSING if number is None else number)
    return FIGURES.pack(*figures)


def parse_worker_id(value: Any) -> str | None:
    """The id as a canonical decimal string, if it is an integral number or numeric string."""
    if type(value) is int and 0 <= value <= 2**53:  # what Vast sends; exact as a float too
        return str(value)
    number = parse_number(value)
    if number is None or number != int(number) or number < 0:
        return None
    return str(int(number))


# Raw status or deployment_version_id -> its label value, interned: a fleet has a handful of
# each, so a worker costs a dict lookup instead of cleaning a string, and shares the string.
_LABELS: dict[tuple[str, Any], str | None] = {}
_MAX_LABELS = 4096
_CACHEABLE = (str, int, float, type(None))


def _cached_label(kind: str, raw: Any, make: Callable[[Any], str | None]) -> str | None:
    if type(raw) not in _CACHEABLE:  # unhashable, or a bool (equal to 1 or 0 as a key)
        return make(raw)
    key = (kind, raw)
    label = _LABELS.get(key, _LABELS)
    if label is _LABELS:
        label = make(raw)
        if label is not None:
            label = sys.intern(label)
        if len(_LABELS) >= _MAX_LABELS:
            _LABELS.clear()
        _LABELS[key] = label
    return label


def _status(value: Any) -> str | None:
    return clean_text(value).lower() if isinstance(value, str) and value.strip() else None


def _deployment(value: Any) -> str | None:
    return _label_number(value) or None


def parse_worker(raw: dict[str, Any]) -> Worker | None:
    """A Worker from one object of the list; None when it has no usable id.

    Only the fields of WORKER_FIELDS, `status` and `deployment_version_id` are read: `url`
    (an address) and anything else the object carries are never kept.
    """
    worker_id = parse_worker_id(raw.get("id"))
    if worker_id is None:
        return None
    status = _cached_label("status", raw.get("status"), _status)
    deployment = _cached_label("deployment", raw.get("deployment_version_id"), _deployment)
    return Worker(worker_id, status, read_figures(raw), deployment)


def decode_json(body: bytes, quote: bool = True) -> Any:
    """Decode a body as JSON; an undecodable body is an invalid_response, quoted in the
    message unless `quote` is false (for bodies that may hold secrets)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        if quote:
            detail = snippet(body)
        else:
            position = getattr(exc, "pos", None)
            detail = f"{len(body)} bytes" + (f", error at byte {position}" if position else "")
        raise PollError("invalid_response", f"not JSON: {detail}") from None


def parse_workers_payload(payload: Any) -> list[Worker]:
    """Workers from a decoded 200 response: a bare list or {"workers": [...]}.

    `{"error_msg": ...}` raises NotReady (see there). A bare JSON string is how Vast's OpenAPI
    documents a refused key or an unknown target, with HTTP 200: a PollError by its text.
    """
    if isinstance(payload, str):
        raise string_error(payload)
    if isinstance(payload, dict):
        if "error_msg" in payload:  # as the SDK tests it: the key, whatever its value
            raise NotReady(shorten(str(payload["error_msg"])) or "no message")
        message = error_message(payload)
        if message is not None:
            raise PollError("api_error", message)
        if "workers" not in payload:
            keys = ", ".join(sorted(map(str, payload))[:5])
            raise PollError("invalid_response", f"object without a workers list (keys: {keys})")
        payload = payload["workers"]
    if not isinstance(payload, list):
        raise PollError("invalid_response", f"expected a list of workers, got {_kind(payload)}")
    if not all(isinstance(item, dict) for item in payload):
        raise PollError("invalid_response", "expected a list of objects")
    workers: dict[str, Worker] = {}
    for item in payload:
        worker = parse_worker(item)
        if worker is not None:
            workers[worker.id] = worker
    return list(workers.values())


def error_message(payload: dict[str, Any]) -> str | None:
    """The error text of a Vast error object (`error_msg`, or `success: false` with `msg`)."""
    if payload.get("error_msg"):
        return shorten(str(payload["error_msg"]))
    if payload.get("success") is False or (payload.get("error") and "workers" not in payload):
        text = payload.get("msg") or payload.get("error") or "request failed (success: false)"
        return shorten(str(text))
    return None


def string_error(text: str) -> PollError:
    """Classify an error sent as a bare JSON string, such as Vast's documented
    "authenticate_endpoint_apikey: invalid api_key or endpoint vLLM-Qwen3-8B not found"."""
    lowered = text.lower()
    if any(word in lowered for word in ("invalid api_key", "unauthorized", "forbidden")):
        reason = "auth"
    elif "not found" in lowered:
        reason = "not_found"
    else:
        reason = "api_error"
    return PollError(reason, shorten(text) or "empty error string")


def body_message(body: bytes) -> str:
    """A short human message from an error body: its JSON error text, else the text itself."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return snippet(body)
    if isinstance(payload, dict):
        message = error_message(payload)
        if message is not None:
            return message
    if isinstance(payload, str):
        return shorten(payload)
    return snippet(body)


def snippet(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return shorten(text) if text else "empty body"


def shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        return text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


# --- account listings (console host) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """An endpoint from `/api/v0/endptjobs/`; its `api_key` field is deliberately not kept."""

    id: int
    name: str
    state: str
    settings: dict[str, float]  # metric suffix (ENDPOINT_FIELDS) -> value


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A worker group from `/api/v0/workergroups/`; its `api_key` is not kept either."""

    id: int
    endpoint_id: int | None
    endpoint_name: str
    template_id: str = ""
    template_hash: str = ""
    settings: dict[str, float] = field(default_factory=dict)  # GROUP_FIELDS metric -> value


def parse_results(payload: Any, key: str) -> list[dict[str, Any]]:
    """The object list under `key` of a listing answer (`{"success": true, key: [...]}`)."""
    if isinstance(payload, dict):
        message = error_message(payload)
        if message is not None:
            raise PollError("api_error", message)
        payload = payload.get(key)
    if not isinstance(payload, list) or not all(isinstance(item, dict) for item in payload):
        raise PollError("invalid_response", f"expected a list of objects under {key!r}")
    return payload


def parse_endpoints(payload: Any) -> list[EndpointInfo]:
    endpoints = {}
    for item in parse_results(payload, "results"):
        endpoint_id = parse_worker_id(item.get("id"))
        if endpoint_id is None:
            continue
        state = item.get("endpoint_state")
        endpoints[int(endpoint_id)] = EndpointInfo(
            int(endpoint_id),
            _text(item.get("endpoint_name")),
            clean_text(state).lower() if isinstance(state, str) else "",
            read_fields(item, ENDPOINT_FIELDS),
        )
    return list(endpoints.values())


def read_fields(item: dict[str, Any], fields: tuple[Field, ...]) -> dict[str, float]:
    """Metric suffix -> value of every field of `fields` the object has as a usable number."""
    values = {}
    for entry in fields:
        number = entry.convert(item.get(entry.api))
        if number is not None:
            values[entry.metric] = number
    return values


def parse_worker_groups(payload: Any) -> list[GroupInfo]:
    groups = {}
    for item in parse_results(payload, "results"):
        group_id = parse_worker_id(item.get("id"))
        if group_id is None:
            continue
        endpoint_id = parse_worker_id(item.get("endpoint_id"))
        groups[int(group_id)] = GroupInfo(
            int(group_id),
            int(endpoint_id) if endpoint_id is not None else None,
            _text(item.get("endpoint_name")),
            _label_number(item.get("template_id")),
            _text(item.get("template_hash")),
            read_fields(item, GROUP_FIELDS),
        )
    return list(groups.values())


def _text(value: Any) -> str:
    return clean_text(value) if isinstance(value, str) else ""


def clean_text(value: str) -> str:
    """Stripped, and valid UTF-8: JSON may carry lone surrogates, which could not be encoded
    into the exposition."""
    return value.strip().encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class Instance:
    """What the v1 instance list says of one instance: hardware labels, status and figures."""

    id: str
    gpu_name: str
    num_gpus: str
    machine_id: str
    geolocation: str
    actual_status: str  # lower-cased; "" when null
    values: dict[str, float]  # INSTANCE_FIELDS metric suffix -> value


def parse_instance(item: dict[str, Any]) -> Instance | None:
    """An Instance from one record (every field may be missing or null); None without an id.

    Only the INSTANCE_FIELDS and label columns are read: the record's secrets (jupyter_token,
    ssh_host, public_ipaddr, ...) are never kept.
    """
    instance_id = parse_worker_id(item.get("id"))
    if instance_id is None:
        return None
    status = item.get("actual_status")
    return Instance(
        instance_id,
        _text(item.get("gpu_name")),
        _label_number(item.get("num_gpus")),
        _label_number(item.get("machine_id")),
        _text(item.get("geolocation")),
        clean_text(status).lower() if isinstance(status, str) else "",
        read_fields(item, INSTANCE_FIELDS),
    )


def parse_instance_page(payload: Any) -> dict[str, Instance]:
    """The instances, by id, of one page `{"success": true, "instances": [...], "next_token":
    ...}` (the cursor is the paging's: exporter.reads.base.next_token)."""
    instances = {}
    for item in parse_results(payload, "instances"):
        instance = parse_instance(item)
        if instance is not None:
            instances[instance.id] = instance
    return instances


def _label_number(value: Any) -> str:
    """An integral number as a label value ("2", not "2.0"); anything else as text or ""."""
    number = parse_worker_id(value)
    return number if number is not None else _text(value)
