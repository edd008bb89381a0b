"""The response parser: both shapes, errors with HTTP 200, loose fields."""

from __future__ import annotations

import gc
import math

import pytest

from exporter.fields import WORKER_FIELDS
from exporter.parsing import (
    FIGURES,
    WORKER_METRICS,
    NotReady,
    PollError,
    body_message,
    decode_json,
    parse_workers_payload,
)

from .fakevast import worker


def test_bare_list_and_workers_object_give_the_same_workers() -> None:
    items = [worker(1), worker(2, status="READY")]
    assert parse_workers_payload(items) == parse_workers_payload({"workers": items})


def test_fields_are_converted_to_base_units() -> None:
    [parsed] = parse_workers_payload([worker(123456)])
    assert parsed.id == "123456"
    assert parsed.status == "running"
    assert parsed.values == {
        "cur_load": 150.0,
        "cur_load_rolling_avg": 50.0,
        "cur_perf": 80.0,
        "disk_usage_bytes": 30 * 2**30,
        "dlperf": 105.87206734930771,
        "loaded_timestamp_seconds": 1724275993.997,
        "measured_perf": 105.87206734930771,
        "perf": 100.5784639818423245,
        "reliability": 0.95,
        "reqs_working": 2.0,
    }


def test_worker_figures_are_an_array_aligned_with_the_field_table() -> None:
    """One packed double per WORKER_FIELDS entry, NaN where missing; read by metric; equal
    workers compare equal despite NaN; figures are nothing the garbage collector walks."""
    raw = worker(5, cur_load="7", perf=None)
    [parsed] = parse_workers_payload([raw])
    assert tuple(field.metric for field in WORKER_FIELDS) == WORKER_METRICS
    figures = FIGURES.unpack(parsed.figures)
    assert len(figures) == len(WORKER_FIELDS)
    assert figures[WORKER_METRICS.index("cur_load")] == 7.0
    assert math.isnan(figures[WORKER_METRICS.index("perf")])
    assert parsed.value("cur_load") == 7.0 and parsed.value("perf") is None
    assert "perf" not in parsed.values and parsed.values["cur_load"] == 7.0
    [again] = parse_workers_payload([raw])
    assert again == parsed
    assert again != parse_workers_payload([worker(5, cur_load="8", perf=None)])[0]
    assert not gc.is_tracked(parsed.figures)


def test_loose_fields_drop_only_themselves() -> None:
    raw = worker(
        "77",
        status=" MODEL_LOADING ",
        cur_load="12.5",
        reliability=None,
        perf="n/a",
        reqs_working=True,
        dlperf=[1],
    )
    del raw["cur_perf"]
    [parsed] = parse_workers_payload([raw])
    assert parsed.id == "77"
    assert parsed.status == "model_loading"
    assert parsed.values["cur_load"] == 12.5
    for dropped in ("reliability", "perf", "reqs_working", "dlperf", "cur_perf"):
        assert dropped not in parsed.values
    assert parsed.values["disk_usage_bytes"] == 30 * 2**30


@pytest.mark.parametrize("bad_id", [None, "abc", 1.5, True, -3, {"x": 1}, ""])
def test_workers_without_a_usable_id_are_skipped(bad_id: object) -> None:
    parsed = parse_workers_payload([worker(bad_id), worker(9)])
    assert [w.id for w in parsed] == ["9"]


def test_missing_status_and_integral_float_id() -> None:
    raw = worker(12.0)
    del raw["status"]
    [parsed] = parse_workers_payload([raw])
    assert (parsed.id, parsed.status) == ("12", None)


def test_empty_list_is_a_valid_answer() -> None:
    assert parse_workers_payload([]) == []
    assert parse_workers_payload({"workers": []}) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"success": False, "error": "x", "msg": "bad key"}, "api_error"),
        ({"error": "boom"}, "api_error"),
        ({"workers": "none"}, "invalid_response"),
        ({"data": []}, "invalid_response"),
        ([1, 2], "invalid_response"),
        ([worker(1), None], "invalid_response"),
        ("text", "api_error"),
        (
            "authenticate_endpoint_apikey: invalid api_key or endpoint vLLM-Qwen3-8B not found",
            "auth",
        ),
        ("Unauthorized", "auth"),
        ("request FORBIDDEN", "auth"),
        ("workergroup 12345 not found", "not_found"),
        (None, "invalid_response"),
        (3, "invalid_response"),
    ],
)
def test_bad_payloads_are_classified(payload: object, reason: str) -> None:
    with pytest.raises(PollError) as caught:
        parse_workers_payload(payload)
    assert caught.value.reason == reason


def test_error_msg_with_http_200_is_not_ready_not_an_error() -> None:
    with pytest.raises(NotReady) as caught:
        parse_workers_payload({"error_msg": "Endpoint not ready " + "x" * 5000})
    assert caught.value.message.startswith("Endpoint not ready")
    assert len(caught.value.message) <= 200


def test_a_bare_string_error_keeps_its_text_short() -> None:
    with pytest.raises(PollError) as caught:
        parse_workers_payload("invalid api_key " + "y" * 5000)
    assert caught.value.reason == "auth"
    assert caught.value.message.startswith("invalid api_key")
    assert len(caught.value.message) <= 200


def test_new_fields_and_their_units() -> None:
    raw = worker(
        4,
        new_load="3.5",
        started_at=1699999000.0,
        created_at="2023-10-01T12:00:00Z",
        loop_lag_max=0.25,
        warnings=["event loop lag", "low disk"],
        deployment_version_id=17,
        url="http://192.168.1.10:8000",
    )
    [parsed] = parse_workers_payload([raw])
    assert parsed.values["new_load"] == 3.5
    assert parsed.values["started_timestamp_seconds"] == 1699999000.0
    assert parsed.values["created_timestamp_seconds"] == 1696161600.0
    assert parsed.values["loop_lag_max_seconds"] == 0.25
    assert parsed.values["warnings"] == 2.0
    assert parsed.deployment == "17"
    assert "192.168" not in repr(parsed)  # url is never kept


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2023-10-01T12:00:00Z", 1696161600.0),
        ("2023-10-01T12:00:00", 1696161600.0),  # no zone: UTC
        ("2023-10-01T14:00:00+02:00", 1696161600.0),
        ("2023-10-01T12:00:00.500000Z", 1696161600.5),
        (1696161600, 1696161600.0),
        ("1696161600.25", 1696161600.25),
    ],
)
def test_created_at_numbers_and_iso_strings(created_at: object, expected: float) -> None:
    [parsed] = parse_workers_payload([worker(1, created_at=created_at)])
    assert parsed.values["created_timestamp_seconds"] == expected


@pytest.mark.parametrize("bad", [None, "yesterday", "", [], {}, True, "2023-13-45T99:00:00Z"])
def test_unusable_new_fields_drop_only_their_series(bad: object) -> None:
    raw = worker(
        2, created_at=bad, started_at=bad, warnings=bad, loop_lag_max=bad, deployment_version_id=bad
    )
    [parsed] = parse_workers_payload([raw])
    for metric in (
        "created_timestamp_seconds",
        "started_timestamp_seconds",
        "loop_lag_max_seconds",
    ):
        assert metric not in parsed.values
    assert ("warnings" in parsed.values) == (bad == [])
    # An id in text is still an id; only null and non-scalars leave the label out.
    assert parsed.deployment == (bad if isinstance(bad, str) and bad else None)
    assert parsed.values["cur_load"] == 150.0


def test_decode_json_rejects_non_json() -> None:
    with pytest.raises(PollError) as caught:
        decode_json(b"<html>oops</html>")
    assert caught.value.reason == "invalid_response"
    assert "<html>oops</html>" in caught.value.message
    with pytest.raises(PollError):
        decode_json(b"[" * 100_000)


def test_body_message_prefers_the_api_error_text() -> None:
    assert body_message(b'{"error_msg": "bad id"}') == "bad id"
    assert body_message(b'{"success": false, "msg": "nope"}') == "nope"
    assert body_message(b"plain   text\n") == "plain text"
    assert body_message(b"") == "empty body"
    assert body_message(b'"quoted"') == "quoted"


def test_absurd_numbers_drop_only_their_field() -> None:
    raw = worker(5, cur_load=10**400, perf="²", reliability="1e999", dlperf=float("nan"))
    [parsed] = parse_workers_payload([raw])
    assert set(parsed.values) & {"cur_load", "perf", "reliability", "dlperf"} == set()
    assert parsed.values["cur_perf"] == 80.0
    assert parse_workers_payload([worker(10**400)]) == []
    assert parse_workers_payload([worker("inf"), worker(float("nan"))]) == []
