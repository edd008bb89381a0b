"""Every account read is declared once (exporter/reads/), and everything built from the
declaration holds it: the config file's example, its JSON Schema, the landing page, --demo,
the client's pacing, the simulated API and the tests' fake. A new read that misses one fails
here, by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest
import yaml

from exporter import sim
from exporter.cli import demo_config
from exporter.config import SECTIONS, Config, check_mapping, config_schema, parse_config
from exporter.reads import ACCOUNT_READS, AccountRead
from exporter.reads.listing import LISTING_GROUP_PATHS
from exporter.settings import parse_section
from exporter.targets import Kind
from tests.fakevast import FakeVast

ROOT = Path(__file__).resolve().parent.parent
READS = pytest.mark.parametrize("read", ACCOUNT_READS, ids=lambda read: read.section)


def _error(message: str, key: str) -> Exception:
    return ValueError(f"{key}: {message}")


@READS
def test_a_read_declares_everything(read: type[AccountRead]) -> None:
    assert read.kind in Kind and read.kind not in (Kind.ENDPOINT, Kind.WORKER_GROUP)
    assert SECTIONS[read.section] is read.settings_type
    names = {spec.name for spec in dataclasses.fields(read.settings_type)}
    assert {"enabled", "interval"} <= names
    assert read.paths and all(path.path.startswith("/api/") for path in read.paths)
    assert all(path.source and path.spacing >= 0 for path in read.paths)
    # Its demo settings pass the section's own validation, and turn it on.
    demo = parse_section(read.settings_type, dict(read.demo), read.section, check_mapping, _error)
    assert demo.enabled


def test_reads_are_distinct() -> None:
    assert len({read.kind for read in ACCOUNT_READS}) == len(ACCOUNT_READS)
    assert len({read.section for read in ACCOUNT_READS}) == len(ACCOUNT_READS)
    paths = [path.path for read in ACCOUNT_READS for path in read.paths]
    assert len(set(paths)) == len(paths)


@READS
def test_config_example_and_schema_have_the_section(read: type[AccountRead]) -> None:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert read.section in example, f"config.example.yaml has no {read.section}: section"
    keys = set(example[read.section] or {})
    assert {"enabled", "interval"} <= keys, read.section
    parse_config(example)  # the example is valid
    schema = config_schema()["properties"][read.section]
    names = {spec.name for spec in dataclasses.fields(read.settings_type)}
    assert set(schema["properties"]) == names
    assert schema["additionalProperties"] is False


def test_the_example_lists_sections_in_declaration_order() -> None:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    sections = [key for key in example if key in SECTIONS]
    assert sections == list(SECTIONS)


def test_config_has_one_attribute_per_read() -> None:
    fields = {spec.name for spec in dataclasses.fields(Config)}
    assert {read.section for read in ACCOUNT_READS} <= fields
    demo = demo_config("http://127.0.0.1:1")
    for read in ACCOUNT_READS:
        assert getattr(demo, read.section) == read.settings_type(**read.demo)


async def test_the_landing_page_shows_every_read(run_exporter) -> None:
    exporter = await run_exporter(None, "--demo")
    page = (await exporter.get("/"))[1]
    for read in ACCOUNT_READS:
        settings = read.settings_type(**read.demo)
        assert f"<th>{read.section}</th><td>{read.describe(settings)}</td>" in page


async def _statuses(base: str, key: str) -> dict[str, int | str]:
    """The status of a call of every path every read calls, with the key, by the path's method
    (a POST with an empty JSON object); a templated path (`{id}`) with an id that need not
    exist: Vast's 404 for an unknown id is JSON ("unknown id" here), aiohttp's for a path
    without a route the text "404: Not Found"."""
    headers = {"Authorization": f"Bearer {key}"}
    statuses: dict[str, int | str] = {}
    async with aiohttp.ClientSession() as session:
        for read in ACCOUNT_READS:
            for path in read.paths:
                body = {} if path.method == "POST" else None
                async with session.request(
                    path.method, base + path.format(id=1), headers=headers, json=body
                ) as response:
                    routed = (await response.text()) != "404: Not Found"
                    unknown_id = response.status == 404 and routed and "{" in path.path
                    statuses[path.path] = "unknown id" if unknown_id else response.status
    return statuses


async def test_the_fake_and_the_simulator_answer_every_read_path(fake_vast: FakeVast) -> None:
    fake_vast.set_account([], [])
    runner, url = await sim.start_simulator("127.0.0.1", 0)
    try:
        simulated = await _statuses(url, "any-key")
        faked = await _statuses(fake_vast.url, fake_vast.api_key)
    finally:
        await runner.cleanup()
    assert {path: status for path, status in simulated.items() if status in (404, 405)} == {}
    # The fake answers every path but the older names it drops to test the fallback (404).
    missing = {path for path, status in faked.items() if status in (404, 405)}
    assert missing == set(LISTING_GROUP_PATHS[1:])
