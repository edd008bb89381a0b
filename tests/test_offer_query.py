"""The offer-query parser (exporter/offer_query.py) against what Vast's CLI makes of the same
queries (tests/fixtures/vastai-cli/offer_queries.json, recorded from vastai 1.9.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.offer_query import (
    QueryError,
    offer_search,
    parse_query,
    read_search_query,
    search_key,
)

RECORDED = json.loads(
    (Path(__file__).parent / "fixtures" / "vastai-cli" / "offer_queries.json").read_text()
)
STRINGS = RECORDED["strings"]


def _id(case: dict[str, Any]) -> str:
    return repr(case["query"])[:60]


def test_the_fixtures_are_the_cli_s_and_name_their_source() -> None:
    assert RECORDED["recorded_with"] == "vastai 1.9.1"
    assert len(STRINGS) >= 25
    documented = [case for case in STRINGS if "grammar" not in case["source"]]
    assert len(documented) >= 25
    assert all(case["source"] for case in STRINGS)
    assert sum("error" in case for case in STRINGS) >= 8
    assert sum("body" in case for case in STRINGS) >= 10


@pytest.mark.parametrize("case", [c for c in STRINGS if "parsed" in c], ids=_id)
def test_a_query_reads_as_the_cli_reads_it(case: dict[str, Any]) -> None:
    parsed = read_search_query(case["query"])
    assert parsed == case["parsed"]
    # Types too: numbers stay strings, multiplied fields are floats, driver versions ints.
    assert json.dumps(parsed) == json.dumps(case["parsed"])


@pytest.mark.parametrize("case", [c for c in STRINGS if "error" in c], ids=_id)
def test_a_query_the_cli_refuses_is_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(QueryError) as error:
        read_search_query(case["query"])
    assert str(error.value)


@pytest.mark.parametrize("case", [c for c in STRINGS if "body" in c], ids=_id)
def test_the_search_of_a_string_is_the_cli_s(case: dict[str, Any]) -> None:
    assert offer_search(read_search_query(case["query"]), 100) == case["body"]


@pytest.mark.parametrize("case", RECORDED["objects"], ids=_id)
def test_the_search_of_an_object_is_the_cli_s(case: dict[str, Any]) -> None:
    assert offer_search(read_search_query(case["query"]), 100) == case["body"]


def test_a_group_without_a_query_has_no_search() -> None:
    assert read_search_query(None) is None
    for value in (42, True, ["num_gpus=1", 2], {1: {"eq": 2}}):
        with pytest.raises(QueryError):
            read_search_query(value)


def test_the_query_s_fields_replace_the_defaults_whole() -> None:
    body = offer_search(parse_query("verified=false num_gpus=2"), 7)
    assert body["verified"] == {"eq": False}
    assert body["rentable"] == {"eq": True} and body["rented"] == {"eq": False}
    assert (body["limit"], body["type"], body["order"]) == (7, "on-demand", [["dph_total", "asc"]])
    # A search object's own order, type or limit does not survive: ours are sent.
    body = offer_search({"order": [["score", "desc"]], "limit": 3, "num_gpus": {"eq": 1}}, 9)
    assert (body["order"], body["limit"], body["num_gpus"]) == (
        [["dph_total", "asc"]],
        9,
        {"eq": 1},
    )


def test_equal_searches_share_one_key() -> None:
    one = offer_search(parse_query("gpu_name in [RTX_4090,RTX_3090] num_gpus=1"), 100)
    two = offer_search(parse_query(["num_gpus=1", "gpu_name in [RTX_4090,RTX_3090]"]), 100)
    three = offer_search(parse_query("gpu_name in [RTX_3090,RTX_4090] num_gpus=1"), 100)
    assert search_key(one) == search_key(two) != search_key(three)


def test_a_non_finite_multiplied_value_is_refused() -> None:
    with pytest.raises(QueryError):
        parse_query("gpu_ram>inf")


@given(st.text(alphabet=" =<>!_[],\"'abcdegilnoqrtuvxyz0123456789.-?*", max_size=40))
def test_any_text_parses_or_is_refused(text: str) -> None:
    try:
        query = parse_query(text)
    except QueryError:
        return
    json.dumps(query, allow_nan=False)  # what is sent is JSON
    assert all(isinstance(ops, dict) and ops for ops in query.values())
