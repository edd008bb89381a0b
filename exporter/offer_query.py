"""A worker group's offer search, read as Vast's own CLI reads it, and the search it makes.

A worker group's `search_query` (vast-ai/docs show_autogroup.yaml: "Parsed search parameters as
JSON object", whose example is the string `verified=true rentable=true rented=false`;
guides/serverless/workergroup-parameters.mdx: "A query string, list, or dictionary") comes as
an object, taken as it is, or as a query string (a list of strings is joined with spaces).
Strings follow the grammar of vast-cli's `vastai/api/query.py` `parse_query` (vastai 1.9.1 on
PyPI), called by `vastai search offers` with the offer fields' aliases and multipliers. This is
our own reading of that grammar, held to the CLI's output for 52 strings
(tests/fixtures/vastai-cli/offer_queries.json):

    query      = comparison (" "+ comparison)*
    comparison = field op value          field = [A-Za-z0-9_]+
    op         = =  ==  !=  <  <=  >  >=  (spaces allowed before)
               | eq neq noteq "not eq" lt lte gt gte in nin notin "not in" (between spaces)
    value      = [ ... ] | "..." | any run of non-spaces

- names: aliases map (`dph` -> `dph_total`, `cuda_vers` -> `cuda_max_good`, ...); an unknown
  field is kept (the CLI only warns);
- values stay strings, with `_` read as a space and double quotes stripped; `true`/`True`,
  `false`/`False` are booleans, `None`/`null` null; `in`/`notin` take a comma list;
- `gpu_ram`, `gpu_total_ram`, `cpu_ram` (GB -> MB, x1000) and `duration` (days -> seconds)
  become numbers; a dotted `driver_version` becomes the CLI's 9-digit number (535.86.05 ->
  535086005);
- `field=any` (or `?`, `*`) drops every earlier condition on the field;
- a second condition with the same operator replaces the first.

Anything else (an unknown operator, a blank value, text the grammar cannot read, a wildcard
with another operator than equals) makes the query invalid, as the CLI refuses it. One
difference: a multiplied value that is not finite (`gpu_ram>inf`) is refused here, where the
CLI would send a NaN or Infinity that is not JSON.

The search (`offer_search`) is what vast-cli's `vastai/api/offers.py` `search_offers` POSTs to
/api/v0/bundles/: its default filters (verified, not external, rentable, not rented) updated by
the query's fields, then `order`, `type`, `limit` and `allocated_storage`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

# vastai/api/query.py offers_alias and offers_mult (vastai 1.9.1).
ALIASES = {
    "cuda_vers": "cuda_max_good",
    "display_active": "gpu_display_active",
    "dlperf_usd": "dlperf_per_dphtotal",
    "dph": "dph_total",
    "flops_usd": "flops_per_dphtotal",
}
MULTIPLIERS = {"cpu_ram": 1000.0, "gpu_ram": 1000.0, "gpu_total_ram": 1000.0, "duration": 86400.0}
OPERATORS = {
    "=": "eq",
    "==": "eq",
    "eq": "eq",
    "!=": "neq",
    "neq": "neq",
    "noteq": "neq",
    "not eq": "neq",
    "<": "lt",
    "lt": "lt",
    "<=": "lte",
    "lte": "lte",
    ">": "gt",
    "gt": "gt",
    ">=": "gte",
    "gte": "gte",
    "in": "in",
    "notin": "notin",
    "not in": "notin",
    "nin": "notin",
}
WILDCARDS = ("?", "*", "any")
LITERALS: dict[str, Any] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "None": None,
    "null": None,
}
# vastai/api/offers.py search_offers: the filters it adds unless the query sets the field.
DEFAULT_FILTERS: dict[str, dict[str, bool]] = {
    "verified": {"eq": True},
    "external": {"eq": False},
    "rentable": {"eq": True},
    "rented": {"eq": False},
}
ORDER = [["dph_total", "asc"]]  # cheapest first
OFFER_TYPE = "on-demand"
ALLOCATED_STORAGE_GIB = 5.0  # vastai search offers --storage default ("in GiB")

# One comparison and the spaces after it. Word operators need a space on each side; symbol
# operators may follow the field at once. The value is a bracketed list, a double-quoted
# string, or a run of non-spaces, tried in that order.
_COMPARISON = re.compile(
    r"""
    (?P<field>[A-Za-z0-9_]+)
    (?P<op>\ *[=><!]+|\ +(?:[lg]te?|nin|neq|eq|not\ ?eq|not\ ?in|in)\ )?
    \ *
    (?P<value>\[[^\]]+\]|"[^"]+"|[^\ ]+)?
    \ *
    """,
    re.VERBOSE,
)


class QueryError(ValueError):
    """A search query Vast's CLI would refuse; the message says why (it holds no secret)."""


def parse_query(text: str | list[str]) -> dict[str, dict[str, Any]]:
    """The search object of a query string (or a list of strings, joined with spaces)."""
    if isinstance(text, list):
        if not all(isinstance(part, str) for part in text):
            raise QueryError("a query list holds only strings")
        text = " ".join(text)
    text = text.strip()
    query: dict[str, dict[str, Any]] = {}
    position = 0
    while position < len(text):
        match = _COMPARISON.match(text, position)
        if match is None:
            raise QueryError(f"cannot read the query from character {position + 1} on")
        position = match.end()
        _apply(query, match["field"], (match["op"] or "").strip(), match["value"] or "")
    return query


def _apply(query: dict[str, dict[str, Any]], field: str, op: str, raw: str) -> None:
    """Add one comparison to `query` (mutated), as the CLI reads it."""
    field = ALIASES.get(field, field)
    operator = OPERATORS.get(op)
    if operator is None:
        raise QueryError(f"unknown operator {op!r} after {field}")
    text = raw.strip(",[]")
    value: Any = text
    if field == "driver_version" and "." in text:
        value = _driver_number(text)
        if operator in ("in", "notin"):
            raise QueryError("driver_version takes no list")
    elif operator in ("in", "notin"):
        value = [item.strip() for item in text.split(",") if item.strip()]
    if not value:
        raise QueryError(f"no value for {field}")
    conditions = query.setdefault(field, {})
    if value in WILDCARDS:
        if operator != "eq":
            raise QueryError(f"{field}: a wildcard only goes with equals")
        del query[field]
        return
    conditions[operator] = _value(field, value)


def _value(field: str, value: Any) -> Any:
    """A comparison's value as the CLI sends it."""
    if isinstance(value, list):
        if field in MULTIPLIERS:
            raise QueryError(f"{field} takes one number, not a list")
        return [item.replace("_", " ").strip('"') for item in value]
    if not isinstance(value, str):
        return value  # driver_version's number
    text = value.replace("_", " ").strip('"')
    if field in MULTIPLIERS:
        try:
            number = float(text) * MULTIPLIERS[field]
        except ValueError:
            raise QueryError(f"{field} takes a number, not {text!r}") from None
        if not math.isfinite(number):
            raise QueryError(f"{field} takes a finite number")
        return number
    return LITERALS.get(text, text)


def _driver_number(text: str) -> int | None:
    """`535.86.05` -> 535086005, as vast-cli's numeric_version: each of three parts padded to
    three digits; None (a blank value) for any other form."""
    parts = text.split(".")
    if len(parts) != 3:
        return None
    try:
        return int("".join(part.zfill(3) for part in parts))
    except ValueError:
        return None


def read_search_query(value: Any) -> dict[str, Any] | None:
    """A worker group's search object: an object as it is, a string or a list of strings
    parsed; None when the group has none (null or missing). Raises QueryError."""
    if value is None:
        return None
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise QueryError("a search object's keys are field names")
        return value
    if isinstance(value, str | list):
        return parse_query(value)
    raise QueryError(f"a search query is an object, a string or a list, not {type(value).__name__}")


def offer_search(query: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """The body vast-cli's search_offers POSTs for `query`, cheapest first, `limit` offers."""
    body: dict[str, Any] = {field: dict(ops) for field, ops in DEFAULT_FILTERS.items()}
    body.update(query)
    body["order"] = ORDER
    body["type"] = OFFER_TYPE
    body["limit"] = limit
    body["allocated_storage"] = ALLOCATED_STORAGE_GIB
    return body


def search_key(body: Mapping[str, Any]) -> str:
    """One text per distinct search: groups whose searches are equal share it."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))
