"""Pacing declared per path (exporter/pacing.py), on virtual time: exact instants, through the
real Vast client and the fake API over loopback HTTP."""

from __future__ import annotations

import asyncio

import pytest

from exporter.pacing import ApiPath, Pacing
from exporter.parsing import PollError
from exporter.reads.base import pages
from exporter.traffic import RequestCounter
from exporter.vast import WORKER_LISTS, VastClient, create_session

from .fakevast import (
    DEPLOYMENT_VERSIONS_PATH,
    INSTANCES_PATH,
    USER_PATH,
    FakeVast,
    failure,
    user_record,
    version,
)
from .harness import API_KEY

pytestmark = pytest.mark.virtual_time

USER = ApiPath(USER_PATH, 1.0, "test")
INSTANCES = ApiPath(INSTANCES_PATH, 1.0, "test")


def _client(
    session, fake: FakeVast, pacing: Pacing, counter: RequestCounter | None = None
) -> VastClient:
    return VastClient(
        session, fake.url, API_KEY, 2.0, console_url=fake.url, pacing=pacing, counter=counter
    )


def _at(fake: FakeVast, path: str) -> list[float]:
    return [request.at for request in fake.requests_for(path)]


async def test_a_path_is_spaced_and_other_paths_are_not(fake_vast: FakeVast) -> None:
    pacing = Pacing((USER, INSTANCES))
    async with create_session(4) as session:
        client = _client(session, fake_vast, pacing)
        for _ in range(3):
            await asyncio.gather(
                client.get(USER_PATH, lambda payload: payload),
                client.get(INSTANCES_PATH, lambda payload: payload),
            )
    assert _at(fake_vast, USER_PATH) == [0.0, 1.0, 2.0]
    assert _at(fake_vast, INSTANCES_PATH) == [0.0, 1.0, 2.0]


async def test_concurrent_requests_to_one_path_queue(fake_vast: FakeVast) -> None:
    pacing = Pacing((USER,))
    pacing.set_spacing(USER_PATH, 2.5)  # a setting may space a path further than Vast asks
    async with create_session(4) as session:
        client = _client(session, fake_vast, pacing)
        await asyncio.gather(*(client.get(USER_PATH, lambda p: p) for _ in range(3)))
    assert _at(fake_vast, USER_PATH) == [0.0, 2.5, 5.0]


async def test_a_429_holds_the_path_for_retry_after_then_doubles_without(
    fake_vast: FakeVast,
) -> None:
    answers = iter(
        [
            failure(429, "too fast", {"Retry-After": "7"}),
            failure(429, "API requests too frequent endpoint threshold=1.0"),
            failure(429, "API requests too frequent endpoint threshold=1.0"),
        ]
    )
    fake_vast.listings[USER_PATH] = lambda: next(answers, None) or _user()
    pacing = Pacing((USER,))
    async with create_session(4) as session:
        client = _client(session, fake_vast, pacing)
        for _ in range(3):
            with pytest.raises(PollError) as caught:
                await client.get(USER_PATH, lambda p: p)
            assert caught.value.reason == "rate_limited"
        assert (await client.get(USER_PATH, lambda p: p))["credit"] == 1.0
        await client.get(USER_PATH, lambda p: p)
    # 7 s (Retry-After); without one, the spacing doubled per 429 in a row (the second and
    # third: 2 s, 4 s); a success resets the streak: back to one spacing.
    assert _at(fake_vast, USER_PATH) == [0.0, 7.0, 9.0, 13.0, 14.0]


def _user():
    from exporter.sim import Reply

    return Reply(body=user_record(credit=1.0, balance=0.0))


async def test_paging_follows_next_token_at_the_paths_spacing(fake_vast: FakeVast) -> None:
    from .fakevast import instance

    fake_vast.set_instances([instance(i, "A100", 1.0) for i in range(1, 61)])
    pacing = Pacing((INSTANCES,))
    async with create_session(4) as session:
        client = _client(session, fake_vast, pacing)
        found = [
            page
            async for page in pages(
                client,
                INSTANCES_PATH,
                lambda payload: [item["id"] for item in payload["instances"]],
                {"limit": "25"},
                max_pages=10,
                is_empty=lambda ids: not ids,
            )
        ]
    assert [len(page) for page in found] == [25, 25, 10]
    assert [ident for page in found for ident in page] == list(range(1, 61))
    assert _at(fake_vast, INSTANCES_PATH) == [0.0, 1.0, 2.0]


async def test_worker_lists_share_the_token_bucket(fake_vast: FakeVast) -> None:
    from exporter.targets import Target

    from .fakevast import worker, workers

    for ident in (1, 2, 3, 4):
        fake_vast.set("endpoint", ident, workers(worker(ident)))
    pacing = Pacing(WORKER_LISTS, worker_list_rate=2.0)
    async with create_session(4) as session:
        client = _client(session, fake_vast, pacing)
        targets = [Target("endpoint", ident, "", ident, "") for ident in (1, 2, 3, 4)]
        await asyncio.gather(*(client.fetch_workers(target) for target in targets))
    # One token to start with, then two a second, over every worker-list request.
    assert sorted(r.at for r in fake_vast.requests) == [0.0, 0.5, 1.0, 1.5]


async def test_a_templated_path_is_one_path_whatever_its_ids(fake_vast: FakeVast) -> None:
    """`/api/v0/deployment/{id}/versions/` is paced, held after a 429 and counted as one path:
    Vast declares its limits per path template, and an id must not become a label value."""
    fake_vast.version_records = {1: [version(11, "a")], 2: [version(21, "b")]}
    one, two = (DEPLOYMENT_VERSIONS_PATH.format(id=ident) for ident in (1, 2))
    fake_vast.listings[one] = iter(
        [None, failure(429, {"detail": "too frequent"}, {"Retry-After": "10"})]
    ).__next__
    pacing = Pacing((ApiPath(DEPLOYMENT_VERSIONS_PATH, 3.0, "test"),))
    counter = RequestCounter()
    async with create_session(4) as session:
        client = _client(session, fake_vast, pacing, counter)
        await asyncio.gather(client.get(one, lambda p: p), client.get(two, lambda p: p))
        with pytest.raises(PollError) as caught:
            await client.get(one, lambda p: p)
        assert caught.value.reason == "rate_limited"
        assert (await client.get(two, lambda p: p))["versions"][0]["id"] == 21
    # 3 s apart across ids; the 429 of deployment 1 at 6 s holds deployment 2 until 16 s.
    assert [r.at for r in fake_vast.requests] == [0.0, 3.0, 6.0, 16.0]
    assert [r.path for r in fake_vast.requests] == [one, two, one, two]
    assert pacing.route(two) == DEPLOYMENT_VERSIONS_PATH
    assert pacing.route("/api/v0/deployment/1/versions/extra/") != DEPLOYMENT_VERSIONS_PATH
    assert counter.snapshot() == (
        (("console", DEPLOYMENT_VERSIONS_PATH, "200"), 3),
        (("console", DEPLOYMENT_VERSIONS_PATH, "429"), 1),
    )
