"""Under faults and churn: every scrape answers, reasons are told apart, memory stays bounded."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import soak_seconds
from .fakevast import FAILURES, FakeVast, Reply, failure, rotating, worker, workers
from .harness import API_KEY, fast_config, series

STORM_TARGETS = 20


def storm_behaviours(offset: int) -> list[Reply]:
    """Every failure form, a timeout and a good answer, starting at a different form per target."""
    forms = [behaviour for behaviour, _ in FAILURES.values()]
    forms += [
        failure(200, [], delay=2.0),
        workers(worker(10_000 + offset), worker(20_000 + offset)),
    ]
    return forms[offset % len(forms) :] + forms[: offset % len(forms)]


async def scrape_forever(base_url: str, stop: asyncio.Event, results: list[str]) -> None:
    """One scraping client: every answer must be a 200 with a parseable exposition."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            async with session.get(f"{base_url}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            families = list(text_string_to_metric_families(text))
            assert any(family.name == "vastai_target_up" for family in families)
            results.append(text)
            await asyncio.sleep(0.02)


@pytest.mark.soak
async def test_fault_storm(fake_vast: FakeVast, run_exporter) -> None:
    for index in range(STORM_TARGETS):
        fake_vast.set("endpoint", index, rotating(storm_behaviours(index)))
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": index} for index in range(STORM_TARGETS)],
        vast={"timeout": "300ms"},
        polling={"interval": "100ms", "concurrency": 8},
    )
    exporter = await run_exporter(config)
    stop, results = asyncio.Event(), []
    scrapers = [
        asyncio.create_task(scrape_forever(exporter.base_url, stop, results)) for _ in range(4)
    ]
    # Every form comes round at least once a target in 14 x 100 ms; a longer storm by SOAK_SECONDS.
    await asyncio.sleep(soak_seconds(2.5))
    stop.set()
    await asyncio.gather(*scrapers)  # re-raises any failed scrape
    assert len(results) >= 20
    assert all(API_KEY not in text for text in results)
    assert API_KEY not in (await exporter.get("/"))[1]
    samples = await exporter.wait_for_metrics(lambda s: True)
    counted = {
        dict(labels)["reason"]
        for labels, value in series(samples, "vastai_target_poll_errors_total").items()
        if value > 0
    }
    assert counted == {reason for _, reason in FAILURES.values()} | {"timeout"}

    for index in range(STORM_TARGETS):  # the storm ends: everything recovers
        fake_vast.set("endpoint", index, workers(worker(index)))
    recovered = await exporter.wait_for_metrics(
        lambda s: sum(series(s, "vastai_target_up").values()) == STORM_TARGETS, timeout=10
    )
    assert len(series(recovered, "vastai_worker_status")) == STORM_TARGETS
    assert (await exporter.get("/-/healthy"))[0] == 200
    assert "Traceback" not in exporter.log and API_KEY not in exporter.log
    assert await exporter.stop() == 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.soak
async def test_worker_churn_keeps_series_and_memory_bounded(
    fake_vast: FakeVast, start_exporter
) -> None:
    fresh_ids = itertools.count(1_000_000)

    def new_workers() -> Reply:
        return workers(*[worker(next(fresh_ids), status="running") for _ in range(50)])

    for target in range(4):
        fake_vast.set("endpoint", target, new_workers)
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": target} for target in range(4)],
        polling={"interval": "50ms", "concurrency": 4},
    )
    exporter = await start_exporter(config)  # a process of its own: its memory is measured
    assert exporter.proc is not None
    counts = []
    await asyncio.sleep(1)  # warm up: allocator pools, first renders
    baseline = rss_kib(exporter.proc.pid)
    rounds = max(8, int(soak_seconds(1.6) / 0.2))
    for _ in range(rounds):
        samples = await exporter.wait_for_metrics(lambda s: True)
        counts.append(len(series(samples, "vastai_worker_status")))
        await asyncio.sleep(0.2)
    grown = rss_kib(exporter.proc.pid) - baseline
    polls = len(fake_vast.requests)
    assert polls >= 60  # thousands of distinct worker ids went through
    assert max(counts) <= 4 * 50  # only the live workers of the last polls are exported
    assert min(counts) >= 50
    assert grown < 20 * 1024, f"RSS grew by {grown} KiB over {polls} polls"
    assert await exporter.stop() == 0
