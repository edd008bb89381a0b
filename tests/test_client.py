"""The Vast client against the fake API over real loopback HTTP."""

from __future__ import annotations

import email.utils
import json

import pytest

from exporter.config import Target
from exporter.pacing import ApiPath, Pacing
from exporter.parsing import PollError
from exporter.traffic import RequestCounter
from exporter.vast import VastClient, create_session, parse_retry_after

from .fakevast import (
    AUTOGROUP_PATH,
    BUNDLES_PATH,
    ENDPOINT_PATH,
    FAILURES,
    WORKERGROUP_PATH,
    FakeVast,
    failure,
    offer,
    worker,
    workers,
)
from .harness import API_KEY

ENDPOINT = Target("endpoint", 10, "ep", 10, "ep")
GROUP = Target("worker_group", 20)


async def fetch(fake: FakeVast, target: Target, timeout: float = 2.0, **kwargs: int) -> list:
    async with create_session(4) as session:
        client = VastClient(session, fake.url, API_KEY, timeout=timeout, **kwargs)
        return await client.fetch_workers(target)


async def test_endpoint_workers_with_the_key_only_in_the_header(fake_vast: FakeVast) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1), worker(2)))
    result = await fetch(fake_vast, ENDPOINT)
    assert [w.id for w in result] == ["1", "2"]
    [request] = fake_vast.requests_for(ENDPOINT_PATH)
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.body) == {"id": 10}
    assert API_KEY not in request.body.decode()
    assert API_KEY not in request.path


async def test_worker_group_object_shape(fake_vast: FakeVast) -> None:
    fake_vast.set("worker_group", 20, workers(worker(5), shape="object"))
    assert [w.id for w in await fetch(fake_vast, GROUP)] == ["5"]
    assert len(fake_vast.requests_for(AUTOGROUP_PATH, 20)) == 1


async def test_worker_group_falls_back_on_404_and_remembers_the_path() -> None:
    fake = await FakeVast(API_KEY, group_paths=(WORKERGROUP_PATH,)).start()
    try:
        fake.set("worker_group", 20, workers(worker(5)))
        fake.set("worker_group", 21, workers(worker(6)))
        async with create_session(4) as session:
            client = VastClient(session, fake.url, API_KEY, timeout=2.0)
            assert [w.id for w in await client.fetch_workers(GROUP)] == ["5"]
            assert [w.id for w in await client.fetch_workers(Target("worker_group", 21))] == ["6"]
            await client.fetch_workers(GROUP)
        assert len(fake.requests_for(AUTOGROUP_PATH)) == 1  # tried once, then never again
        assert len(fake.requests_for(WORKERGROUP_PATH)) == 3
    finally:
        await fake.close()


async def test_worker_group_missing_on_both_paths_is_not_found() -> None:
    fake = await FakeVast(API_KEY, group_paths=()).start()
    try:
        with pytest.raises(PollError) as caught:
            await fetch(fake, GROUP)
        assert caught.value.reason == "not_found"
        assert len(fake.requests) == 2
    finally:
        await fake.close()


@pytest.mark.parametrize("form", sorted(FAILURES))
async def test_every_failure_form_has_its_reason(fake_vast: FakeVast, form: str) -> None:
    behaviour, reason = FAILURES[form]
    fake_vast.set("endpoint", 10, behaviour)
    with pytest.raises(PollError) as caught:
        await fetch(fake_vast, ENDPOINT)
    assert caught.value.reason == reason
    assert caught.value.message


async def test_wrong_key_is_auth(fake_vast: FakeVast) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    async with create_session(4) as session:
        client = VastClient(session, fake_vast.url, "wrong-key", timeout=2.0)
        with pytest.raises(PollError) as caught:
            await client.fetch_workers(ENDPOINT)
    assert caught.value.reason == "auth"


async def test_timeout(fake_vast: FakeVast) -> None:
    fake_vast.set("endpoint", 10, failure(200, [], delay=2.0))
    with pytest.raises(PollError) as caught:
        await fetch(fake_vast, ENDPOINT, timeout=0.2)
    assert caught.value.reason == "timeout"


async def test_connection_refused() -> None:
    fake = await FakeVast(API_KEY).start()
    url = fake.url
    await fake.close()
    async with create_session(4) as session:
        client = VastClient(session, url, API_KEY, timeout=2.0)
        with pytest.raises(PollError) as caught:
            await client.fetch_workers(ENDPOINT)
    assert caught.value.reason == "connection"


async def test_retry_after_is_read_from_429(fake_vast: FakeVast) -> None:
    fake_vast.set("endpoint", 10, failure(429, "slow down", {"Retry-After": "7"}))
    with pytest.raises(PollError) as caught:
        await fetch(fake_vast, ENDPOINT)
    assert (caught.value.reason, caught.value.retry_after) == ("rate_limited", 7.0)


def test_parse_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("²", now) is None  # str.isdigit() would say yes
    assert parse_retry_after("9" * 400, now) is None


async def test_an_echoed_key_is_redacted_from_the_message(fake_vast: FakeVast) -> None:
    fake_vast.set("endpoint", 10, failure(400, f"invalid api_key {API_KEY} for endpoint"))
    with pytest.raises(PollError) as caught:
        await fetch(fake_vast, ENDPOINT)
    assert API_KEY not in caught.value.message and API_KEY not in str(caught.value)
    assert "<redacted>" in caught.value.message


async def test_oversized_body_is_refused(fake_vast: FakeVast) -> None:
    fake_vast.set("endpoint", 10, workers(*[worker(i) for i in range(200)]))
    with pytest.raises(PollError) as caught:
        await fetch(fake_vast, ENDPOINT, max_response_bytes=10_000)
    assert caught.value.reason == "invalid_response"
    assert "larger than 10000 bytes" in caught.value.message


async def test_large_bodies_are_parsed_too(fake_vast: FakeVast) -> None:
    many = [worker(i, status="READY") for i in range(3000)]  # ~900 KB: parsed in a thread
    fake_vast.set("endpoint", 10, workers(*many, shape="object"))
    result = await fetch(fake_vast, ENDPOINT)
    assert len(result) == 3000 and {w.status for w in result} == {"ready"}


async def test_a_remembered_group_path_that_starts_to_404_falls_back_again() -> None:
    fake = await FakeVast(API_KEY, group_paths=(AUTOGROUP_PATH,)).start()
    try:
        fake.set("worker_group", 20, workers(worker(5)))
        async with create_session(4) as session:
            client = VastClient(session, fake.url, API_KEY, timeout=2.0)
            assert [w.id for w in await client.fetch_workers(GROUP)] == ["5"]
            fake.group_paths = (WORKERGROUP_PATH,)  # Vast renames the call
            assert [w.id for w in await client.fetch_workers(GROUP)] == ["5"]
            assert [w.id for w in await client.fetch_workers(GROUP)] == ["5"]
        assert len(fake.requests_for(AUTOGROUP_PATH)) == 2
        assert len(fake.requests_for(WORKERGROUP_PATH)) == 2
    finally:
        await fake.close()


async def test_oversized_streamed_body_is_cut_off(fake_vast: FakeVast) -> None:
    many = [worker(i) for i in range(200)]  # ~60 KB, sent chunked: no Content-Length to check
    fake_vast.set("endpoint", 10, failure(200, many, chunked=True))
    with pytest.raises(PollError) as caught:
        await fetch(fake_vast, ENDPOINT, max_response_bytes=10_000)
    assert caught.value.reason == "invalid_response"
    assert [w.id for w in await fetch(fake_vast, ENDPOINT)] == [str(i) for i in range(200)]


@pytest.mark.virtual_time
async def test_post_sends_a_json_body_paced_counted_and_scrubbed(fake_vast: FakeVast) -> None:
    """client.post, for the offer search: the body as JSON, the key only in the header, the
    path's spacing and 429 hold, the request counted, an echoed key redacted."""
    fake_vast.offer_records = [offer(1, "RTX 4090", 1, 0.3), offer(2, "RTX 3090", 1, 0.2)]
    counter = RequestCounter()
    pacing = Pacing([ApiPath(BUNDLES_PATH, 6.0, "test", method="POST")])
    search = {"gpu_name": {"eq": "RTX 4090"}, "order": [["dph_total", "asc"]]}
    async with create_session(4) as session:
        client = VastClient(
            session, fake_vast.url, API_KEY, 2.0, console_url=fake_vast.url, counter=counter,
            pacing=pacing,
        )  # fmt: skip
        first = await client.post(BUNDLES_PATH, lambda answer: answer["offers"], search)
        second = await client.post(BUNDLES_PATH, lambda answer: answer["offers"], {})
        fake_vast.listings[BUNDLES_PATH] = failure(400, f"bad key {API_KEY}")
        with pytest.raises(PollError) as caught:
            await client.post(BUNDLES_PATH, lambda answer: answer, {})
        fake_vast.listings[BUNDLES_PATH] = failure(429, "too many searches", {"Retry-After": "20"})
        with pytest.raises(PollError) as limited:
            await client.post(BUNDLES_PATH, lambda answer: answer, {})
        del fake_vast.listings[BUNDLES_PATH]
        await client.post(BUNDLES_PATH, lambda answer: answer, {})
    assert [o["id"] for o in first] == [1] and {o["id"] for o in second} == {1, 2}
    requests = fake_vast.requests_for(BUNDLES_PATH)
    assert json.loads(requests[0].body) == search
    assert all(r.headers["Authorization"] == f"Bearer {API_KEY}" for r in requests)
    assert all(API_KEY not in r.body.decode() + r.query for r in requests)
    # 6 s apart, and held for the 429's Retry-After.
    assert [r.at for r in requests] == [0.0, 6.0, 12.0, 18.0, 38.0]
    assert caught.value.reason == "api_error" and API_KEY not in caught.value.message
    assert "<redacted>" in caught.value.message and limited.value.reason == "rate_limited"
    counts = dict(counter.snapshot())
    assert counts[("console", BUNDLES_PATH, "200")] == 3
    assert counts[("console", BUNDLES_PATH, "429")] == 1
