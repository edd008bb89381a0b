"""Vast's v1 instance list, answered as vast-ai/docs show_instances.yaml documents it.

Used by the simulator (and the tests) so that both page, filter and refuse exactly as
the real call does: at most 25 instances a page (<= 0 means 5), keyset paging with an opaque
`after_token` (an invalid one is 400 `invalid_token`), `select_cols` (unknown names come back
null), `select_filters` with eq/neq/gt/gte/lt/lte/in/notin on stored columns (a computed column
such as dph_total or num_gpus is 400 `invalid_request`); its limit of one request a second per
key is in `ratelimit.LIMITS`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

# What v0 answers since Vast retired it (as reported by users of several projects, mid-2026).
V0_GONE = {
    "success": False,
    "error": "deprecated_endpoint",
    "msg": "/api/v0/instances/ is deprecated. Use /api/v1/instances/ instead.",
}
MAX_LIMIT = 25
COMPUTED = frozenset({"dph_total", "num_gpus", "dph_base", "storage_total_cost", "reliability2"})
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


def answer(records: list[dict[str, Any]], query: Mapping[str, str]) -> tuple[int, Any]:
    """(HTTP status, JSON body) of GET /api/v1/instances/ over `records` for a query string."""
    try:
        filters = json.loads(query.get("select_filters", "{}"))
        columns = json.loads(query.get("select_cols", '["*"]'))
        limit = int(query.get("limit", str(MAX_LIMIT)))
    except ValueError:
        return 400, _bad("invalid_request", "Error in query parameters: not valid JSON")
    if not isinstance(filters, dict) or not isinstance(columns, list):
        return 400, _bad("invalid_request", "Error in query parameters")
    for column, condition in filters.items():
        if column in COMPUTED:
            return 400, _bad(
                "invalid_request", f"Error in query parameters: {column} is not a valid search key"
            )
        if not isinstance(condition, dict) or not set(condition) <= set(OPERATORS):
            return 400, _bad("invalid_request", f"Error in query parameters: bad filter {column}")
    matching = sorted((r for r in records if _matches(r, filters)), key=lambda record: record["id"])
    after = query.get("after_token")
    if after is not None:
        last_id = _decode_token(after)
        if last_id is None:
            return 400, _bad("invalid_token", "Invalid after_token")
        matching_after = [r for r in matching if r["id"] > last_id]
    else:
        matching_after = matching
    limit = MAX_LIMIT if limit > MAX_LIMIT else 5 if limit <= 0 else limit
    page = matching_after[:limit]
    more = len(matching_after) > limit
    selected = [_select(record, columns) for record in page]
    labels: dict[str, int] = {}
    for record in matching:
        label = record.get("label") or ""
        labels[label] = labels.get(label, 0) + 1
    return 200, {
        "success": True,
        "instances_found": len(selected),
        "total_instances": len(matching),
        "label_counts": labels,
        "next_token": _encode_token(page[-1]["id"]) if more and page else None,
        "instances": selected,
    }


def _bad(error: str, msg: str) -> dict[str, str]:
    return {"error": error, "msg": msg}


def _matches(record: dict[str, Any], filters: dict[str, dict[str, Any]]) -> bool:
    return all(
        OPERATORS[op](record.get(column), value)
        for column, condition in filters.items()
        for op, value in condition.items()
    )


def _select(record: dict[str, Any], columns: list[Any]) -> dict[str, Any]:
    if columns == ["*"]:
        return dict(record)
    return {str(column): record.get(str(column)) for column in columns}


def _encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"values": {"id": last_id}}).encode()).decode()


def _decode_token(token: str) -> int | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))["values"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
