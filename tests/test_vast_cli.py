"""Vast's own CLI, `vastai` 1.9.1, reads every simulated answer the exporter reads.

The simulator is the ground truth of the demo and of every test, so a field it leaves out or a
path it answers differently from Vast is a bug no other test can see; Vast's official client
sees it (issue 22). `vastai-exporter simulate` runs as a process; each command of `READS`, one
row per CLI command that reads something the exporter reads, runs with
`vastai --url URL --api-key KEY --raw ...` (tests/vastcli.py) and must exit 0, print JSON, and
show the simulated ids: those the simulator answers the same call with, read over HTTP by the
test just before and just after the CLI runs (with other keys, so the per-key rate limits of
the two never meet). Workers come and go, so an id the CLI shows must be in one of the two
reads, and an id in both must be shown.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from exporter.sim import demo_targets
from exporter.sim.model import QUERY_STRING_GROUP_ID, group_searches

from .vastcli import ENTRY_POINT, Run, cli_python, run_cli

pytestmark = pytest.mark.timeout(900)  # the first run builds the CLI's virtualenv from PyPI

CLI_KEY = "cli-oracle-key"
Ids = set[str]


def listed(items: Any) -> Ids:
    """The ids of a list of records."""
    return {str(item["id"]) for item in items}


def one(record: Any) -> Ids:
    """The id of one record; none for null (an instance that is gone)."""
    return {str(record["id"])} if isinstance(record, dict) and "id" in record else set()


def results(body: Any) -> Ids:
    return listed(body["results"])


def instances(body: Any) -> Ids:
    return listed(body["instances"])


def instance(body: Any) -> Ids:
    return one(body["instances"])


def contracts(body: Any) -> Ids:
    """The instances of the pending price increases' envelope."""
    return {str(row["contract_id"]) for row in body["pending_price_increases"]}


def charged(body: Any) -> Ids:
    """The contracts of a charges page, such as `instance-18142921` and `volume-5512`."""
    return {str(node["source"]) for node in body["results"]}


@dataclass(frozen=True)
class Source:
    """The simulator's own answer to the call a CLI command makes, read by the test: a
    method, a path with its query (a Template of the context), a JSON body, and its ids."""

    method: str
    path: str
    ids: Callable[[Any], Ids]
    body: str | None = None


@dataclass(frozen=True)
class Read:
    """A CLI command (a Template of the context) that reads what the exporter reads; the ids
    in its --raw output; and where the simulator answers the same."""

    command: str
    shown: Callable[[Any], Ids]
    source: Source


GROUPS = Source("GET", "/api/v0/workergroups/", results)
INSTANCES = Source("GET", "/api/v1/instances/", instances)
DEPLOYMENTS = Source("GET", "/api/v0/deployments/", lambda body: listed(body["deployments"]))
CHARGES = "/api/v0/charges/?select_filters=$days&limit=100"  # as the CLI asks for them
# What `vastai search offers gpu_name=RTX_4090 num_gpus=1 -o dph_total` sends: its default
# filters, the query as its parse_query reads it, the order, the type and the storage.
OFFER_SEARCH = json.dumps(
    {
        "verified": {"eq": True},
        "external": {"eq": False},
        "rentable": {"eq": True},
        "gpu_name": {"eq": "RTX 4090"},
        "num_gpus": {"eq": "1"},
        "order": [["dph_total", "asc"]],
        "type": "on-demand",
        "allocated_storage": 5.0,
    }
)
READS: tuple[Read, ...] = (
    Read("show endpoints", listed, Source("GET", "/api/v0/endptjobs/", results)),
    Read("show workergroups", listed, GROUPS),
    Read(
        "get endpt-workers $endpoint",
        listed,
        Source("POST", "/get_endpoint_workers/", listed, body='{"id": $endpoint}'),
    ),
    Read("show instances", listed, INSTANCES),
    Read("show instance $instance", one, Source("GET", "/api/v0/instances/$instance/", instance)),
    Read("show user", one, Source("GET", "/api/v0/users/current/", one)),
    Read(
        "show invoices-v1 --charges -s $start -e $end -l 100",
        charged,
        Source("GET", CHARGES, charged),
    ),
    Read("show deployments", listed, DEPLOYMENTS),
    Read(
        "show deployment $deployment",
        one,
        Source("GET", "/api/v0/deployment/$deployment/", lambda body: one(body["deployment"])),
    ),
    Read(
        "show deployment-versions $deployment",
        listed,
        Source(
            "GET", "/api/v0/deployment/$deployment/versions/", lambda body: listed(body["versions"])
        ),
    ),
    # Supply and contracts (issue 23): the offer search, and the hosts' pending increases.
    Read(
        "search offers gpu_name=RTX_4090 num_gpus=1 -o dph_total",
        listed,
        Source("POST", "/api/v0/bundles/", lambda body: listed(body["offers"]), OFFER_SEARCH),
    ),
    Read(
        "show pending-price-increases",
        contracts,
        Source("GET", "/api/v0/instances/pending-price-increases/", contracts),
    ),
)


@dataclass(frozen=True)
class Simulator:
    url: str
    session: aiohttp.ClientSession

    async def read(self, source: Source, context: dict[str, str], key: str) -> Any:
        """The simulator's answer to `source` for `key`, which must be a success."""
        path = Template(source.path).substitute(context)
        body = (
            None if source.body is None else json.loads(Template(source.body).substitute(context))
        )
        headers = {"Authorization": f"Bearer {key}"}
        async with self.session.request(
            source.method, self.url + path, json=body, headers=headers
        ) as resp:
            assert resp.status == 200, f"{source.method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def snapshot(self, context: dict[str, str], key: str) -> list[Ids]:
        """The ids of every row's source, each read with `key`."""
        return [row.source.ids(await self.read(row.source, context, key)) for row in READS]


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """`vastai-exporter simulate` on a free port of 127.0.0.1 (any key accepted)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "simulate", "--listen", "127.0.0.1:0", "--no-flaky",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        url = await asyncio.wait_for(_listening(process), 20)
        async with aiohttp.ClientSession() as session:
            yield Simulator(url, session)
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def _listening(process: asyncio.subprocess.Process) -> str:
    """The URL the simulator logs once it listens."""
    assert process.stderr is not None
    while line := (await process.stderr.readline()).decode():
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError("the simulator exited before listening")


async def context_of(sim: Simulator) -> dict[str, str]:
    """What the commands name: the simulated account's first endpoint, an instance that is
    running (it stays listed for at least 8 s: stopping, then destroying), and a window of
    two hours around now for the charges."""
    instances = (await sim.read(INSTANCES, {}, "context-key"))["instances"]
    running = min(i["id"] for i in instances if i["actual_status"] == "running")
    deployments = (await sim.read(DEPLOYMENTS, {}, "context-key"))["deployments"]
    now = int(time.time())
    days = {"day": {"gte": now - 3600, "lte": now + 3600}}
    return {
        "endpoint": str(demo_targets()[0].id),
        "instance": str(running),
        "start": str(now - 3600),
        "end": str(now + 3600),
        "days": quote(json.dumps(days)),
        "deployment": str(deployments[0]["id"]),
    }


async def test_vast_cli_reads_every_simulated_answer(simulator: Simulator, tmp_path: Path):
    python = cli_python()
    assert ENTRY_POINT in (python.parent / "vastai").read_text()  # what the runner calls
    context = await context_of(simulator)
    base = ["--url", simulator.url, "--api-key", CLI_KEY, "--raw"]
    commands = [base + Template(row.command).substitute(context).split() for row in READS]
    searches = group_searches()
    before = await simulator.snapshot(context, "before-key")
    runs, parsed = await run_cli(
        python, commands, [text for text, _ in searches.values()], tmp_path
    )
    after = await simulator.snapshot(context, "after-key")
    for row, run, old, new in zip(READS, runs, before, after, strict=True):
        check(row, run, old, new)
    # The groups' search_query objects are what vastai's own parser makes of their strings.
    assert parsed == [query for _, query in searches.values()]
    groups = (await simulator.read(GROUPS, context, "groups-key"))["results"]
    served = {g["id"]: g["search_query"] for g in groups}
    assert served == {
        ident: text if ident == QUERY_STRING_GROUP_ID else query
        for ident, (text, query) in searches.items()
    }


def check(row: Read, run: Run, before: Ids, after: Ids) -> None:
    """Exit 0, JSON on stdout, no error on stderr, and the simulated ids."""
    assert run.rc == 0, run
    assert '"error": true' not in run.stderr and "Traceback" not in run.stderr, run
    try:
        output = json.loads(run.stdout)
    except ValueError:
        pytest.fail(f"not JSON: {run}")
    shown = row.shown(output)
    assert shown, run
    assert before & after <= shown <= before | after, (run, sorted(before), sorted(after))
