"""Property-based tests of the response parser: arbitrary JSON never breaks it."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.fields import WORKER_FIELDS
from exporter.parsing import REASONS, NotReady, PollError, decode_json, parse_workers_payload

FIELDS = [field.api for field in WORKER_FIELDS] + ["id", "status", "deployment_version_id"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1.5", " 7 ", "nan", "-inf", "1e999", "0x10", "²", "NaN", "12"]),
)
any_json = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
worker_like = st.fixed_dictionaries({}, optional={name: any_json for name in FIELDS})
payloads = st.one_of(
    any_json,
    st.lists(worker_like, max_size=6),
    st.fixed_dictionaries({"workers": st.lists(worker_like, max_size=6)}),
    st.fixed_dictionaries({"error_msg": any_json}),
)


def check(payload: object) -> None:
    try:
        workers = parse_workers_payload(payload)
    except PollError as error:
        assert error.reason in ("auth", "not_found", "api_error", "invalid_response")
        assert len(error.message) <= 200
        return
    except NotReady as not_ready:
        assert len(not_ready.message) <= 200
        return
    ids = [worker.id for worker in workers]
    assert len(ids) == len(set(ids))
    for worker in workers:
        assert worker.id.isdigit()
        assert worker.status is None or worker.status == worker.status.strip().lower()
        assert all(math.isfinite(value) for value in worker.values.values())


@settings(deadline=None)  # examples: the hypothesis profile (tests/conftest.py)
@given(payloads)
def test_arbitrary_payloads_never_raise_and_never_yield_non_finite_values(payload) -> None:
    check(payload)


@settings(deadline=None)
@given(st.binary(max_size=200) | payloads.map(lambda p: json.dumps(p).encode()))
def test_arbitrary_bodies_decode_or_fail_as_invalid_response(body: bytes) -> None:
    try:
        payload = decode_json(body)
    except PollError as error:
        assert error.reason == "invalid_response"
        return
    check(payload)


def test_reasons_are_the_contract() -> None:
    assert REASONS == (
        "auth",
        "not_found",
        "rate_limited",
        "server_error",
        "timeout",
        "connection",
        "api_error",
        "invalid_response",
    )
