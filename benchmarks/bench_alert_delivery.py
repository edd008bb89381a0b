"""How long an alert takes from a failure to the receiver, and its resolution from the recovery.

The path of tests/test_alertmanager.py, measured: the exporter (in this process, polling every
300 ms) over the fake Vast API with discovery, a real Prometheus (scrapes and evaluations every
second, deploy/prometheus/vastai-rules.yaml with VastaiTargetDown's `for:` set by `--for`) and
Alertmanager (deploy/alertmanager/alertmanager.yml with group_wait 0s and group_interval 1s),
and a webhook receiver. Each round fails a worker group of its own (a fresh alert group, as in
production), waits for VastaiTargetDown at the receiver, lets the group recover and waits for the
resolved notification. Times are from the change at the fake API to the notification's arrival.

    python benchmarks/bench_alert_delivery.py [--rounds 5] [--for 1s]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from common import API_KEY, FakeVast, fast_config, machine, run, worker

from tests.alerting import (
    AlertingStack,
    Notification,
    WebhookReceiver,
    prometheus_has,
    rules_with_short_for,
)
from tests.fakevast import endpoint, failure, worker_group, workers
from tests.inprocess import InProcessExporter, write_config

ALERT = "VastaiTargetDown"
FIRST_GROUP = 20
TIMEOUT = 60.0


def state(group_id: int, status: str):
    """A predicate: a notification carrying the group's alert in `status`."""

    def matches(notification: Notification) -> bool:
        return any(
            a["labels"].get("id") == str(group_id) and a["status"] == status
            for a in notification.alerts(ALERT)
        )

    return matches


async def measure(rounds: int, for_: str, workdir: Path) -> list[tuple[float, float]]:
    fake = await FakeVast(API_KEY).start()
    groups = list(range(FIRST_GROUP, FIRST_GROUP + rounds))
    fake.set_account([endpoint(10, "chat")], [worker_group(group, 10, "chat") for group in groups])
    for group in groups:
        fake.set("worker_group", group, workers(worker(group * 100)))
    config = workdir / "config.yaml"
    write_config(
        config,
        fast_config(
            fake.url, vast={"console_url": fake.url}, discovery={"enabled": True, "interval": "1s"}
        ),
    )
    os.environ["VAST_API_KEY"] = API_KEY
    exporter = await InProcessExporter(
        ["--config.file", str(config), "--web.listen-address", "127.0.0.1:0"]
    ).start()
    receiver = await WebhookReceiver().start()
    stack = AlertingStack(
        workdir, shutil.which("prometheus") or "prometheus",
        shutil.which("prometheus-alertmanager") or "prometheus-alertmanager",
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    results = []
    try:
        await stack.start(
            exporter.url.removeprefix("http://"), rules_with_short_for({ALERT: for_}), receiver.url
        )
        await prometheus_has(  # every group scraped up, with its listing info
            stack.prometheus_url,
            f'count(vastai_target_up{{kind="worker_group"}} == 1) == {rounds} '
            f"and on () count(vastai_worker_group_info) == {rounds}",
        )
        for group in groups:
            failed_at = loop.time()
            fake.set("worker_group", group, failure(500, "Internal Server Error"))
            fired = await receiver.wait_for(state(group, "firing"), TIMEOUT)
            recovered_at = loop.time()
            fake.set("worker_group", group, workers(worker(group * 100)))
            cleared = await receiver.wait_for(state(group, "resolved"), TIMEOUT)
            results.append((fired.at - failed_at, cleared.at - recovered_at))
            print(f"group {group}: firing after {results[-1][0]:.2f} s, "
                  f"resolved after {results[-1][1]:.2f} s")  # fmt: skip
    finally:
        await stack.stop()
        await receiver.close()
        await exporter.close()
        await fake.close()
    return results


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(values):.2f} s, "
        f"min {min(values):.2f} s, max {max(values):.2f} s"
    )


async def main(args: argparse.Namespace) -> None:
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        results = await measure(args.rounds, args.for_, Path(tmp))
    print(f"{ALERT} with for: {args.for_}, scrape and evaluation every 1 s, {args.rounds} rounds")
    print(summary("failure -> firing notification", [r[0] for r in results]))
    print(summary("recovery -> resolved notification", [r[1] for r in results]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--for", dest="for_", default="1s", help="VastaiTargetDown's for:")
    run(main(parser.parse_args()))
