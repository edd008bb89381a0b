"""Account billing: the credit left, and what each endpoint was charged today (UTC).

Two console calls (vast-ai/docs show_user.yaml and show_charges.yaml), read once per
`billing.interval`: `GET /api/v0/users/current/`, of which only `credit` and `balance` are kept
(the record also holds an email and an SSH key: personal data, never kept), and
`GET /api/v0/charges/` for the current UTC day in tree format, paged to the end. Its serverless
contracts come wrapped in `endpoint-<id>` and `workergroup-<id>` nodes whose leaves are the
per-contract items typed gpu, disk, bwd (download) and bwu (upload).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prometheus_client.core import GaugeMetricFamily, Metric

from ..fields import parse_number
from ..metrics import View
from ..pacing import ApiPath
from ..parsing import PollError, parse_results, parse_worker_id
from ..settings import BOOL, DURATION, Minimum, setting
from ..targets import Kind
from .base import AccountRead, pages

ITEM_TYPES = ("gpu", "disk", "bwd", "bwu")  # show_charges.yaml: items[].type
TOTAL = "total"
CHARGE_TYPES = (*ITEM_TYPES, TOTAL)
BILLED = "cached from the last billing read"
# show_user.yaml publishes no limit: spaced like the charges, a second apart.
USER = ApiPath("/api/v0/users/current/", 1.0, "show_user.yaml (no published limit)")
CHARGES = ApiPath("/api/v0/charges/", 1.0, "show_charges.yaml (x-rate-limit 1.0)")
USER_PATH, CHARGES_PATH = USER.path, CHARGES.path
DAY = 86400
PAGE_SIZE = 500  # show_charges.yaml: "Server maximum 500"
MAX_PAGES = 10_000  # a cursor that never ends cannot loop forever
_WRAPPER = re.compile(r"^(endpoint|workergroup)-(\d+)$")
MAX_DEPTH = 8  # endpoint > workergroup > contract > item, with room to spare

Amounts = dict[str, float]  # item type or "total" -> dollars


@dataclass(frozen=True)
class Charges:
    """Today's charges: account-wide, per endpoint and per worker group, by item type."""

    account: Amounts = field(default_factory=dict)
    endpoints: dict[int, Amounts] = field(default_factory=dict)
    groups: dict[int, tuple[int | None, Amounts]] = field(default_factory=dict)  # endpoint, ...


@dataclass(frozen=True)
class Billing:
    """What the billing read found: credit and balance in dollars, and today's charges."""

    credit: float | None
    balance: float | None
    charges: Charges
    day_start: int  # unix seconds of the UTC midnight the charges count from


def parse_user(payload: Any) -> tuple[float | None, float | None]:
    """(credit, balance) of `/api/v0/users/current/`; nothing else of the record is kept.

    `credit` is what vast-cli's `vastai show user` prints as Credit (vastai/cli/display.py
    user_fields: "credit", "{:0.2f}"), the spendable credit; `balance` is printed beside it.
    """
    if not isinstance(payload, dict):
        raise PollError("invalid_response", "expected the user object")
    if payload.get("success") is False:
        raise PollError("api_error", str(payload.get("msg") or payload.get("error") or "failed"))
    credit, balance = parse_number(payload.get("credit")), parse_number(payload.get("balance"))
    if credit is None and balance is None:
        raise PollError("invalid_response", "the user object has neither credit nor balance")
    return credit, balance


def day_range(now: float) -> tuple[int, int]:
    """The current UTC day as (midnight, now) in unix seconds, as select_filters' day range."""
    start = int(now // DAY * DAY)
    return start, max(start, int(now))


def charges_page(payload: Any) -> list[dict[str, Any]]:
    """The results of one page of `/api/v0/charges/` (the cursor is the paging's)."""
    return parse_results(payload, "results")


def add_charges(charges: Charges, results: list[dict[str, Any]]) -> None:
    """Add one page of tree-format results to `charges` (mutated in place)."""
    for node in results:
        amount = parse_number(node.get("amount"))
        if amount is not None:
            _add(charges.account, TOTAL, amount)
        _walk(charges, node, None, None, 0)


def _walk(
    charges: Charges,
    node: dict[str, Any],
    endpoint_id: int | None,
    group_id: int | None,
    depth: int,
) -> None:
    """Credit each leaf item to the account and to the wrappers above it; wrapper totals are
    their own `amount`."""
    if depth > MAX_DEPTH:
        return
    source = node.get("source")
    wrapper = _WRAPPER.match(source) if isinstance(source, str) else None
    amount = parse_number(node.get("amount"))
    if wrapper is not None:
        kind, ident = wrapper.group(1), int(wrapper.group(2))
        if kind == Kind.ENDPOINT:
            endpoint_id = ident
            if amount is not None:
                _add(charges.endpoints.setdefault(ident, {}), TOTAL, amount)
        else:
            group_id = ident
            metadata = node.get("metadata")
            meta_endpoint = metadata.get("endpoint_id") if isinstance(metadata, dict) else None
            owner = endpoint_id
            if owner is None and (found := parse_worker_id(meta_endpoint)) is not None:
                owner = int(found)
            endpoint_id = owner
            _, amounts = charges.groups.setdefault(ident, (owner, {}))
            if amount is not None:
                _add(amounts, TOTAL, amount)
    kind = node.get("type")
    children = node.get("items")
    if kind in ITEM_TYPES and not children and amount is not None:
        _add(charges.account, kind, amount)
        if endpoint_id is not None:
            _add(charges.endpoints.setdefault(endpoint_id, {}), kind, amount)
        if group_id is not None:
            _add(charges.groups.setdefault(group_id, (endpoint_id, {}))[1], kind, amount)
        return
    if isinstance(children, list):
        for child in children:
            if isinstance(child, dict):
                _walk(charges, child, endpoint_id, group_id, depth + 1)


def complete_totals(charges: Charges) -> None:
    """An endpoint or group without a wrapper amount of its own totals its items."""
    for amounts in (*charges.endpoints.values(), *(a for _, a in charges.groups.values())):
        if TOTAL not in amounts:
            amounts[TOTAL] = sum(amounts.get(kind, 0.0) for kind in ITEM_TYPES)
    for kind in (*ITEM_TYPES, TOTAL):
        charges.account.setdefault(kind, 0.0)


def _add(amounts: Amounts, kind: str, amount: float) -> None:
    amounts[kind] = amounts.get(kind, 0.0) + amount


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


class BillingRead(AccountRead):
    """Credit and today's charges (billing.*); a key without billing permission fails this
    read alone."""

    kind = Kind.BILLING
    section = "billing"
    settings_type = BillingSettings
    paths = (USER, CHARGES)
    demo: ClassVar[Mapping[str, Any]] = {"enabled": True, "interval": 60.0}
    found: Billing | None = None

    async def read(self) -> Billing:
        """The user record, then today's charges page by page (each path paced by the
        client)."""
        credit, balance = await self._get(USER_PATH, parse_user)
        start, end = day_range(time.time())
        charges = Charges()
        params = {
            "select_filters": json.dumps(
                {"day": {"gte": start, "lte": end}}, separators=(",", ":")
            ),
            "format": "tree",
            "limit": str(PAGE_SIZE),
        }
        try:
            client = self.context.client
            async for results in pages(
                client, CHARGES_PATH, charges_page, params, MAX_PAGES, _empty
            ):
                add_charges(charges, results)
        except PollError as exc:
            raise _as_auth(exc) from None
        complete_totals(charges)
        return Billing(credit, balance, charges, start)

    def apply(self, result: Billing) -> None:
        self.found = result

    def clear(self) -> None:
        self.found = None

    def view(self, fresh: bool) -> View | None:
        """This replica's endpoints and groups (the shard rule), named as their targets are;
        nothing once the last success is older than stale_after."""
        if self.found is None or not fresh:
            return None
        charges, names = self.found.charges, self.context.endpoint_names
        owns = self.context.shard.owns
        endpoints = tuple(
            (str(ident), names.get(ident, ""), amounts)
            for ident, amounts in sorted(charges.endpoints.items())
            if owns(Kind.ENDPOINT, ident)
        )
        groups = tuple(
            (
                str(ident),
                "" if endpoint_id is None else str(endpoint_id),
                "" if endpoint_id is None else names.get(endpoint_id, ""),
                amounts,
            )
            for ident, (endpoint_id, amounts) in sorted(charges.groups.items())
            if owns(Kind.WORKER_GROUP, ident)
        )
        return BillingView(
            self.found.credit, self.found.balance, charges.account, endpoints, groups
        )

    async def _get(self, path: str, parse: Callable[[Any], Any]) -> Any:
        try:
            return await self.context.client.get(path, parse)
        except PollError as exc:
            raise _as_auth(exc) from None


def _as_auth(error: PollError) -> PollError:
    """Vast answers 404 "when the supplied API key does not match any user" (show_user.yaml):
    an auth failure, not a missing path."""
    return PollError("auth", error.message) if error.reason == "not_found" else error


def _empty(results: list[dict[str, Any]]) -> bool:
    return not results


@dataclass(frozen=True)
class BillingView(View):
    """What the metrics show of a billing read: this replica's endpoints and groups, named."""

    credit: float | None
    balance: float | None
    account: Amounts
    endpoints: tuple[tuple[str, str, Amounts], ...]  # (endpoint_id, endpoint_name, amounts)
    groups: tuple[tuple[str, str, str, Amounts], ...]  # (group_id, endpoint_id, name, amounts)

    def families(self) -> Iterator[Metric]:
        """Credit and today's charges from the billing read (absent while billing is off)."""
        found = self
        for name, value, what in (
            (
                "credit",
                found.credit,
                "Spendable credit of the account (credit, as vastai show user)",
            ),
            ("balance", found.balance, "Balance of the account (balance, as vastai show user)"),
        ):
            if value is not None:
                yield GaugeMetricFamily(
                    f"vastai_account_{name}_dollars", f"{what}, dollars; {BILLED}.", value=value
                )
        today = f"since 00:00 UTC, by item type (gpu, disk, bwd, bwu) and total; {BILLED}."
        account = GaugeMetricFamily(
            "vastai_account_charges_today_dollars",
            f"Charges of every contract of the account (instances, volumes, serverless) {today}",
            labels=("type",),
        )
        for kind in CHARGE_TYPES:
            account.add_metric((kind,), found.account.get(kind, 0.0))
        endpoints = GaugeMetricFamily(
            "vastai_endpoint_charges_today_dollars",
            f"Charges of the endpoint's serverless contracts {today}",
            labels=("endpoint_id", "endpoint_name", "type"),
        )
        for endpoint_id, name, amounts in found.endpoints:
            for kind in CHARGE_TYPES:
                endpoints.add_metric((endpoint_id, name, kind), amounts.get(kind, 0.0))
        groups = GaugeMetricFamily(
            "vastai_worker_group_charges_today_dollars",
            f"Charges of the worker group's serverless contracts {today}",
            labels=("worker_group_id", "endpoint_id", "endpoint_name", "type"),
        )
        for group_id, endpoint_id, name, amounts in found.groups:
            for kind in CHARGE_TYPES:
                groups.add_metric((group_id, endpoint_id, name, kind), amounts.get(kind, 0.0))
        yield from (account, endpoints, groups)
