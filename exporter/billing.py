"""Account billing: the credit left, and what each endpoint was charged today (UTC).

Two console calls (vast-ai/docs show_user.yaml and show_charges.yaml), read once per
`billing.interval`: `GET /api/v0/users/current/`, of which only `credit` and `balance` are kept
(the record also holds an email and an SSH key: personal data, never kept), and
`GET /api/v0/charges/` for the current UTC day in tree format, paged to the end. Its serverless
contracts come wrapped in `endpoint-<id>` and `workergroup-<id>` nodes whose leaves are the
per-contract items typed gpu, disk, bwd (download) and bwu (upload).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from .clock import loop_time
from .config import Kind
from .fields import parse_number
from .metrics import View
from .parsing import PollError, parse_results, parse_worker_id
from .reads import AccountRead, ReadContext

ITEM_TYPES = ("gpu", "disk", "bwd", "bwu")  # show_charges.yaml: items[].type
TOTAL = "total"
CHARGE_TYPES = (*ITEM_TYPES, TOTAL)
BILLED = "cached from the last billing read"
USER_PATH = "/api/v0/users/current/"  # show_user.yaml
CHARGES_PATH = "/api/v0/charges/"  # show_charges.yaml
DAY = 86400
PAGE_SIZE = 500  # show_charges.yaml: "Server maximum 500"
CALL_SPACING = 1.0  # x-rate-limit threshold 1.0 on /api/v0/charges/; the user call too
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


def charges_page(payload: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The results and the next cursor of one page of `/api/v0/charges/`."""
    results = parse_results(payload, "results")
    token = payload.get("next_token") if isinstance(payload, dict) else None
    return results, token if isinstance(token, str) and token else None


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


FetchUser = Callable[[], Awaitable[tuple[float | None, float | None]]]
FetchCharges = Callable[[int, int, str | None], Awaitable[tuple[list[dict[str, Any]], str | None]]]


class BillingReader:
    """One billing read: the user record, then today's charges page by page, calls spaced."""

    def __init__(
        self,
        fetch_user: FetchUser,
        fetch_charges: FetchCharges,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self._fetch_user = fetch_user
        self._fetch_charges = fetch_charges
        self._wall_clock = wall_clock
        self._clock = clock
        self._last_call: float | None = None

    async def read(self) -> Billing:
        credit, balance = await self._spaced(self._fetch_user)
        start, end = day_range(self._wall_clock())
        charges, token = Charges(), None
        for _ in range(10_000):  # a cursor that never ends cannot loop forever
            results, token = await self._spaced(
                lambda token=token: self._fetch_charges(start, end, token)
            )
            add_charges(charges, results)
            if token is None or not results:
                break
        complete_totals(charges)
        return Billing(credit, balance, charges, start)

    async def _spaced(self, call: Callable[[], Awaitable[Any]]) -> Any:
        if self._last_call is not None:
            wait = self._last_call + CALL_SPACING - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            return await call()
        finally:
            self._last_call = self._clock()


class BillingRead(AccountRead):
    """Credit and today's charges (billing.*); a key without billing permission fails this
    read alone."""

    kind = Kind.BILLING
    section = "billing"
    found: Billing | None = None

    def __init__(self, context: ReadContext) -> None:
        super().__init__(context)
        self.reader = BillingReader(self._user, self._charges)

    async def read(self) -> Billing:
        return await self.reader.read()

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

    async def _user(self) -> tuple[float | None, float | None]:
        return await self._get(USER_PATH, parse_user)

    async def _charges(
        self, day_start: int, day_end: int, after_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the day's charges of every contract type, serverless ones in tree
        format (show_charges.yaml: select_filters with a UTC day range, format=tree)."""
        params = {
            "select_filters": json.dumps(
                {"day": {"gte": day_start, "lte": day_end}}, separators=(",", ":")
            ),
            "format": "tree",
            "limit": str(PAGE_SIZE),
        }
        if after_token is not None:
            params["after_token"] = after_token
        return await self._get(CHARGES_PATH, charges_page, params)

    async def _get(self, path: str, parse: Callable[[Any], Any], params: Any = None) -> Any:
        try:
            return await self.context.client.get(path, parse, params)
        except PollError as exc:
            if exc.reason == "not_found":  # 404 "when the supplied API key does not match any user"
                raise PollError("auth", exc.message) from None
            raise


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
