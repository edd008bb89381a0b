"""End to end: the exporter polling the fake Vast API over loopback; in this event loop (the
CLI's own start-up code), or as the real CLI in a child process where a process is the point:
exit codes, signals, logs on stderr, the key never leaking."""

from __future__ import annotations

import asyncio
import html
import inspect
import itertools
import json
import logging
import signal
import socket
import time

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Target
from exporter.render_loop import MetricsCache
from exporter.scheduler import TargetState
from exporter.server import ExporterApp

from .conftest import promtool
from .fakevast import ENDPOINT_PATH, FAILURES, FakeVast, failure, worker, workers
from .harness import API_KEY, fast_config, series, value

Samples = dict


def worker_ids(samples: Samples) -> set[str]:
    return {dict(labels)["worker_id"] for labels in series(samples, "vastai_worker_status")}


def merge_config(fake: FakeVast, **overrides: object) -> dict:
    return fast_config(
        fake.url,
        endpoints=[{"id": 10, "name": "chat"}],
        worker_groups=[{"id": 20, "endpoint_id": 10}, {"id": 30}],
        **overrides,
    )


@pytest.mark.virtual_time
async def test_workers_are_merged_labelled_and_served(fake_vast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1), worker(2, status="READY")))
    fake_vast.set("worker_group", 20, workers(worker(1), worker(3, cur_load="7"), shape="object"))
    fake_vast.set("worker_group", 30, failure(200, [worker(4, reliability=None)], delay=0.25))
    exporter = await run_exporter(merge_config(fake_vast))
    samples = await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1", "2", "3", "4"})

    def labels_of(worker_id: str) -> dict:
        [labels] = series(samples, "vastai_worker_cur_load", worker_id=worker_id)
        return dict(labels)

    assert labels_of("1") == {
        "endpoint_id": "10",
        "endpoint_name": "chat",
        "worker_group_id": "20",
        "worker_id": "1",
    }
    assert labels_of("2")["worker_group_id"] == ""
    assert labels_of("3")["endpoint_id"] == "10"  # the group's configured endpoint
    assert labels_of("4")["endpoint_id"] == "" and labels_of("4")["worker_group_id"] == "30"
    assert value(samples, "vastai_worker_cur_load", worker_id="3") == 7.0
    assert value(samples, "vastai_worker_status", worker_id="2", status="ready") == 1.0
    assert series(samples, "vastai_worker_reliability", worker_id="4") == {}
    assert value(samples, "vastai_worker_disk_usage_bytes", worker_id="1") == 30 * 2**30
    assert value(samples, "vastai_target_up", kind="endpoint", id="10", name="chat") == 1.0
    assert value(samples, "vastai_target_workers", kind="worker_group", id="20") == 2.0
    assert value(samples, "vastai_exporter_build_info", version="0.1.0") == 1.0
    assert value(samples, "vastai_target_poll_duration_seconds", id="30") == 0.25  # its delay
    assert (
        abs(value(samples, "vastai_target_last_success_timestamp_seconds", id="30") - time.time())
        < 30
    )

    status, page, headers = await exporter.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'href="/metrics"' in page and "0.1.0" in page
    assert "<td>worker_group</td><td>20</td>" in page
    assert (await exporter.get("/-/healthy"))[0] == 200
    assert (await exporter.get("/-/ready"))[0] == 200
    assert await exporter.stop() == 0


@pytest.mark.virtual_time
async def test_worker_gone_from_a_response_loses_its_series(fake_vast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1), worker(2)))
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1", "2"})
    fake_vast.set("endpoint", 10, workers(worker(1)))
    samples = await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"}, timeout=3)
    assert all(dict(k[1]).get("worker_id") != "2" for k in samples)


@pytest.mark.virtual_time
async def test_failing_target_is_down_keeps_workers_then_drops_them(
    fake_vast, run_exporter
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.set("worker_group", 30, workers(worker(9)))
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": 10}],
        worker_groups=[{"id": 30}],
        polling={"stale_after": "2s"},
    )
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1", "9"})
    fake_vast.set("endpoint", 10, failure(500, "Internal Server Error"))
    down = await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_up", id="10") == 0.0, timeout=3
    )
    assert worker_ids(down) == {"1", "9"}  # still within stale_after
    gone = await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"9"}, timeout=5)
    assert value(gone, "vastai_target_workers", id="10") == 0.0
    assert value(gone, "vastai_target_poll_errors_total", id="10", reason="server_error") >= 3
    assert value(gone, "vastai_target_up", id="30") == 1.0  # the other target is untouched
    # One log line for the state change, not one per failed poll.
    assert len([line for line in exporter.lines if "target down" in line]) == 1
    fake_vast.set("endpoint", 10, workers(worker(1)))
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1", "9"}, timeout=3)
    await exporter.wait_for_log("target up.*id=10.*down_for=")
    status, page, _ = await exporter.get("/")
    assert status == 200 and "<td>endpoint</td><td>10</td><td></td><td>up</td>" in page


@pytest.mark.virtual_time
async def test_every_failure_form_is_reported_with_its_reason(fake_vast, run_exporter) -> None:
    forms = sorted(FAILURES)
    for index, form in enumerate(forms):
        fake_vast.set("endpoint", 100 + index, FAILURES[form][0])
    fake_vast.set("endpoint", 99, workers(worker(1)))
    fake_vast.set("endpoint", 98, failure(200, [], delay=3))
    endpoints = [{"id": 100 + index} for index in range(len(forms))] + [{"id": 99}, {"id": 98}]
    config = fast_config(fake_vast.url, endpoints=endpoints, polling={"concurrency": 32})
    exporter = await run_exporter(config)

    def reasons_counted(samples: Samples) -> bool:
        return (
            all(
                value(samples, "vastai_target_poll_errors_total", id=str(100 + i), reason=reason)
                >= 1
                for i, (_, reason) in enumerate(FAILURES[form] for form in forms)
            )
            and value(samples, "vastai_target_poll_errors_total", id="98", reason="timeout") >= 1
        )

    samples = await exporter.wait_for_metrics(reasons_counted, timeout=8)
    for index, form in enumerate(forms):
        reason = FAILURES[form][1]
        assert value(samples, "vastai_target_up", id=str(100 + index)) == 0.0, form
        others = series(samples, "vastai_target_poll_errors_total", id=str(100 + index))
        wrong = {dict(k)["reason"]: v for k, v in others.items() if dict(k)["reason"] != reason}
        assert set(wrong.values()) == {0.0}, (form, wrong)
    assert value(samples, "vastai_target_up", id="99") == 1.0
    assert worker_ids(samples) == {"1"}
    assert "reason=server_error" in exporter.log and "reason=invalid_response" in exporter.log
    assert "Traceback" not in exporter.log


@pytest.mark.virtual_time
async def test_rate_limited_target_backs_off(fake_vast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, failure(429, "API requests too frequent"))
    fake_vast.set("endpoint", 11, failure(429, "slow down", {"Retry-After": "2"}))
    fake_vast.set("endpoint", 12, workers(worker(1)))
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": 10}, {"id": 11}, {"id": 12}],
        polling={"interval": "200ms"},
    )
    exporter = await run_exporter(config)
    await asyncio.sleep(3.2)
    await exporter.stop()
    polled_at = {i: [r.at for r in fake_vast.requests_for(ENDPOINT_PATH, i)] for i in (10, 11, 12)}
    # Without backoff each would be polled 16 times in 3.2 s. Exponential: at 0, 0.4, 1.2, 2.8 s.
    assert polled_at[10] == pytest.approx([0.0, 0.4, 1.2, 2.8], abs=1e-9)
    # Retry-After: 2 s wins over the short backoff: polled at 0 and 2 s only.
    assert polled_at[11] == [0.0, 2.0]
    # Every 200 ms, stretched or shrunk by the jitter (at most 5%).
    gaps = [b - a for a, b in itertools.pairwise(polled_at[12])]
    assert all(0.19 <= gap <= 0.21 for gap in gaps), gaps
    assert 1 + 3.2 // 0.21 <= len(polled_at[12]) <= 1 + 3.2 // 0.19  # 16 or 17 polls


@pytest.mark.virtual_time
async def test_concurrency_limit_and_scrapes_never_call_the_api(fake_vast, run_exporter) -> None:
    for target_id in range(10, 16):
        fake_vast.set("endpoint", target_id, failure(200, [worker(target_id)], delay=0.3))
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": i} for i in range(10, 16)],
        polling={"interval": "1h", "concurrency": 2},
    )
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(lambda s: len(worker_ids(s)) == 6, timeout=5)
    assert fake_vast.max_in_flight == 2
    calls = len(fake_vast.requests)
    assert calls == 6
    for _ in range(20):
        await exporter.scrape()
    assert len(fake_vast.requests) == calls


@pytest.mark.virtual_time
async def test_ready_only_after_every_target_was_polled(fake_vast, run_exporter) -> None:
    # Slower than MetricsCache.FIRST_ROUND_HOLD (2 s), so the first render shows target 10's
    # workers while target 11 is still being polled.
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.set("endpoint", 11, failure(500, "boom", delay=3.0))
    config = fast_config(
        fake_vast.url,
        vast={"timeout": "10s"},
        endpoints=[{"id": 10}, {"id": 11}],
        polling={"interval": "1h"},
    )
    exporter = await run_exporter(config)
    status, text, _ = await exporter.get("/-/ready")
    assert status == 503, text
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"})
    assert (await exporter.get("/-/ready"))[0] == 503
    # Ready from the render that shows target 11's answer (3 s after its request, then the
    # render's debounce), not a millisecond sooner.
    debounce = inspect.signature(MetricsCache).parameters["debounce"].default
    rendered = fake_vast.requests_for(ENDPOINT_PATH, 11)[0].at + 3.0 + debounce
    loop = asyncio.get_running_loop()
    await asyncio.sleep(rendered - 0.001 - loop.time())
    assert (await exporter.get("/-/ready"))[0] == 503
    await asyncio.sleep(0.002)
    assert loop.time() == pytest.approx(rendered + 0.001, abs=1e-9)
    assert (await exporter.get("/-/ready"))[0] == 200
    assert (await exporter.get("/-/healthy"))[0] == 200


async def test_promtool_accepts_a_real_scrape(fake_vast, run_exporter) -> None:
    tool = promtool()
    fake_vast.set("endpoint", 10, workers(worker(1), worker(2, status="loading", loaded_at=0)))
    fake_vast.set("worker_group", 20, FAILURES["429"][0])
    config = fast_config(
        fake_vast.url, endpoints=[{"id": 10, "name": 'quote " me'}], worker_groups=[{"id": 20}]
    )
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(
        lambda s: (
            worker_ids(s) == {"1", "2"}
            and series(s, "vastai_target_up", id="20")
            and series(s, "vastai_endpoint_cold_start_seconds_count")
        )  # lifecycle families too
    )
    text = await exporter.scrape()
    proc = await asyncio.create_subprocess_exec(
        tool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, output.decode()
    assert output.decode() == ""


async def test_the_key_never_leaks(fake_vast, start_exporter, tmp_path) -> None:
    fake_vast.set("endpoint", 10, failure(400, f"invalid api_key {API_KEY}"))
    fake_vast.set("endpoint", 11, failure(400, {"error_msg": f"key {API_KEY} not allowed"}))
    fake_vast.set("endpoint", 12, workers(worker(1)))
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": 10, "name": "a"}, {"id": 11}, {"id": 12}],
        vast={"api_key_file": str(key_file)},
    )

    async def run(fmt: str) -> None:
        exporter = await start_exporter(
            config, "--log.level", "debug", "--log.format", fmt, key=None
        )
        await exporter.wait_for_metrics(
            lambda s: value(s, "vastai_target_poll_errors_total", id="11", reason="api_error") >= 2
        )
        texts = [await exporter.scrape(), (await exporter.get("/"))[1]]
        assert await exporter.stop() == 0
        assert "<redacted>" in exporter.log
        for text in [*texts, exporter.log]:
            assert API_KEY not in text

    await asyncio.gather(run("logfmt"), run("json"))  # one process per log format, at once
    assert all(API_KEY not in r.path and API_KEY not in r.body.decode() for r in fake_vast.requests)


async def test_json_logs_are_one_object_per_line(fake_vast, start_exporter) -> None:
    fake_vast.set("endpoint", 10, failure(404, "nope"))
    exporter = await start_exporter(
        fast_config(fake_vast.url, endpoints=[{"id": 10}]), "--log.format", "json"
    )
    await exporter.wait_for_log("target down")
    assert await exporter.stop(signal.SIGINT) == 0
    records = [json.loads(line) for line in exporter.lines if line.strip()]
    assert {"time", "level", "message"} <= set(records[0])
    down = next(r for r in records if r["message"] == "target down")
    assert (down["level"], down["reason"], down["kind"], down["id"]) == (
        "warning",
        "not_found",
        "endpoint",
        10,
    )


async def test_demo_mode_shows_workers_within_five_seconds(run_exporter) -> None:
    started = time.monotonic()
    exporter = await run_exporter(None, "--demo", key=None)
    samples = await exporter.wait_for_metrics(lambda s: len(worker_ids(s)) >= 10, timeout=5)
    assert time.monotonic() - started < 5
    assert len({dict(k)["endpoint_id"] for k in series(samples, "vastai_worker_status")}) >= 2
    assert len({dict(k)["worker_group_id"] for k in series(samples, "vastai_worker_status")}) >= 3
    # The groups' own settings from the listing; none of its secrets or personal data.
    samples = await exporter.wait_for_metrics(
        lambda s: len(series(s, "vastai_worker_group_cold_mult")) == 5, timeout=10
    )
    cold_mult = series(samples, "vastai_worker_group_cold_mult", worker_group_id="1004")
    assert list(cold_mult.values()) == [3.0]
    text = await exporter.scrape() + (await exporter.get("/"))[1]
    for secret in ("simkey-", "hf_sim", "@example.com", "203.0.113.", "Example Street", "rented"):
        assert secret not in text
    assert await exporter.stop() == 0


@pytest.mark.virtual_time
async def test_a_new_failure_reason_while_down_is_one_warning(
    fake_vast, run_exporter, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    fake_vast.set("endpoint", 10, failure(503, "maintenance"))
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    await exporter.wait_for_metrics(lambda s: value(s, "vastai_target_up", id="10") == 0.0)
    fake_vast.set("endpoint", 10, failure(401, "Unauthorized"))
    # still down for the same reason after the change: nothing more is logged
    await exporter.wait_for_metrics(
        lambda s: value(s, "vastai_target_poll_errors_total", id="10", reason="auth") >= 3
    )
    changed = [r for r in caplog.records if r.getMessage() == "target still down, reason changed"]
    assert len(changed) == 1 and changed[0].levelno == logging.WARNING
    fields = changed[0].fields  # type: ignore[attr-defined]
    reasons = (fields["previous_reason"], fields["reason"])
    assert fields["id"] == 10 and reasons == ("server_error", "auth")
    assert len([r for r in caplog.records if r.getMessage() == "target down"]) == 1


@pytest.mark.virtual_time
async def test_landing_page_shows_errors_and_settings_without_the_key(
    fake_vast, run_exporter
) -> None:
    long_message = f"invalid api_key {API_KEY} " + "x" * 400
    fake_vast.set("endpoint", 10, failure(400, long_message))
    fake_vast.set("endpoint", 11, workers(worker(1)))
    config = fast_config(
        fake_vast.url,
        endpoints=[{"id": 10, "name": "broken"}, {"id": 11}],
        polling={"interval": "7s"},
        discovery={"enabled": False, "interval": "2m", "include": "^prod-"},
        instances={"enabled": False, "interval": "45s"},
    )
    exporter = await run_exporter(config)
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"})
    status, page, _ = await exporter.get("/")
    assert status == 200 and API_KEY not in page
    row = next(line for line in page.splitlines() if "<td>broken</td>" in line)
    assert "<td>api_error</td>" in row and "invalid api_key &lt;redacted&gt; xxx" in row
    message = row.split("<td>api_error</td><td>")[1].split("</td>")[0]
    assert len(html.unescape(message)) <= 200  # shortened (by the client already, here)
    assert f"<th>API base URL</th><td>{fake_vast.url}</td>" in page
    assert "<th>poll interval</th><td>7s" in page
    assert "<th>discovery</th><td>off</td>" in page and "<th>instances</th><td>off</td>" in page
    assert "<th>message</th>" in page and "<th>lifecycle API</th>" in page


async def test_landing_page_shows_not_ready_targets_shortened_and_redacted() -> None:
    """In process: nothing in this branch sets not_ready yet; the page shows it when set."""
    ready = TargetState(Target("endpoint", 5, "fine"), polled=True, up=True)
    waiting = TargetState(
        Target("endpoint", 6, "waiting"),
        polled=True,
        up=True,
        not_ready=True,
        not_ready_message=f"no worker ready (key {API_KEY}) " + "y" * 300,
    )
    cache = MetricsCache(lambda: (ready, waiting), 60.0, 60.0)
    await cache.refresh()

    async def reload() -> None:
        return None

    def redact(text: str) -> str:
        return text.replace(API_KEY, "<redacted>")

    app = ExporterApp(cache, reload, redact=redact, settings=lambda: [("API base URL", "u")])
    runner = web.AppRunner(app.build())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/") as response,
        ):
            page = await response.text()
    finally:
        await runner.cleanup()
    assert API_KEY not in page
    row = next(line for line in page.splitlines() if "<td>waiting</td>" in line)
    assert "<td>up, not ready</td>" in row
    cell = row.split("</td>")[-2].removeprefix("<td>")
    assert cell.startswith("no worker ready (key &lt;redacted&gt;) yyy")
    assert cell.endswith("\u2026") and len(html.unescape(cell)) == 200
    fine = next(line for line in page.splitlines() if "<td>fine</td>" in line)
    assert fine.endswith("<td></td><td></td></tr>")  # no error, not flagged
    assert "<th>API base URL</th><td>u</td>" in page


# --- exit codes ------------------------------------------------------------------------------


async def run_cli(start_exporter, config, *args: str, key: str | None = API_KEY):
    exporter = await start_exporter(config, *args, key=key, wait_started=False)
    code = await exporter.wait()
    return code, exporter.log


async def test_bad_flag_exits_2(start_exporter) -> None:
    shard = "endpoints: [{id: 1}]\n"
    # Runs that only start and exit go at once (two cores): the same checks, half the wait.
    (code, log), (code2, log2), *shards = await asyncio.gather(
        run_cli(start_exporter, None, "--nope"),
        run_cli(start_exporter, None, "--log.level", "loud"),
        run_cli(start_exporter, shard, "--shard.index", "2", "--shard.count", "2"),
        run_cli(start_exporter, shard, "--shard.count", "0"),
    )
    assert code == 2 and "--nope" in log and len(log.splitlines()) <= 3
    assert code2 == 2 and "--log.level" in log2
    for code, log in shards:
        assert code == 2 and "--shard." in log


INVALID_CONFIGS = [
    ("endpoints: [{id: 1}]\npolling: {interval: 0s}\n", "polling.interval"),
    ("endpoints: [{id: 1}]\nvast: {api_key: abc}\n", "VAST_API_KEY"),
    ("endpoints: [{id: x}]\n", "endpoints[0].id"),
    ("endpoints: [\n", "not valid YAML"),
]


async def test_invalid_config_exits_2_naming_file_and_key(start_exporter, tmp_path) -> None:
    """Each invalid config, run and --check-config'ed: all the runs at once, each config in a
    file of its own (all named config.yaml, as the message must say)."""
    runs = []
    for index, (config, _) in enumerate(INVALID_CONFIGS):
        path = tmp_path / f"case{index}" / "config.yaml"
        path.parent.mkdir()
        path.write_text(config)
        flags = ("--config.file", str(path))
        runs.append(run_cli(start_exporter, None, *flags))
        runs.append(run_cli(start_exporter, None, *flags, "--check-config"))
    results = await asyncio.gather(*runs)
    for index, (_, needle) in enumerate(INVALID_CONFIGS):
        (code, log), (checked, check_log) = results[2 * index : 2 * index + 2]
        assert code == 2, needle
        assert needle in log and "config.yaml" in log
        assert "Traceback" not in log and len(log.splitlines()) <= 3
        assert checked == 2 and needle in check_log


async def test_missing_config_and_missing_key_exit_2(start_exporter, tmp_path) -> None:
    (code, log), (code2, log2) = await asyncio.gather(
        run_cli(start_exporter, None, "--config.file", str(tmp_path / "none.yaml")),
        run_cli(start_exporter, "endpoints: [{id: 1}]\n", key=None),
    )
    assert code == 2 and "none.yaml" in log and "not found" in log
    assert "--demo" in log and "config.example.yaml" in log, "what a new user can do instead"
    assert code2 == 2 and "VAST_API_KEY" in log2 and "config.yaml" in log2
    assert "Traceback" not in log2


async def stdout_of(start_exporter, config, *args: str, key: str | None = API_KEY):
    """Exit code and standard output of one CLI run."""
    exporter = await start_exporter(config, *args, key=key, wait_started=False)
    code = await exporter.wait()
    assert exporter.proc is not None and exporter.proc.stdout is not None
    return code, (await exporter.proc.stdout.read()).decode()


async def test_check_config_and_version_exit_0(start_exporter) -> None:
    config = "endpoints: [{id: 1}]\n"
    (code, out), (code2, log), version = await asyncio.gather(
        stdout_of(start_exporter, config, "--check-config"),
        run_cli(start_exporter, config, "--check-config", key=None),
        stdout_of(start_exporter, None, "--version"),
    )
    assert code == 0 and "OK (1 targets, API key found)" in out
    assert code2 == 2 and "VAST_API_KEY" in log
    assert version == (0, "vastai-exporter 0.1.0\n")


async def test_port_in_use_exits_1(fake_vast, start_exporter) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = fast_config(fake_vast.url, endpoints=[{"id": 1}])
        exporter = await start_exporter(
            config, "--web.listen-address", f"127.0.0.1:{port}", wait_started=False
        )
        assert await exporter.wait() == 1
    assert "cannot listen" in exporter.log and "Traceback" not in exporter.log


async def test_signals_stop_within_five_seconds_with_polls_in_flight(
    fake_vast, start_exporter
) -> None:
    """SIGTERM and SIGINT, one process each, at once."""
    fake_vast.set("endpoint", 10, failure(200, [], delay=30))
    config = fast_config(fake_vast.url, endpoints=[{"id": 10}], vast={"timeout": "60s"})
    signums = (signal.SIGTERM, signal.SIGINT)
    exporters = await asyncio.gather(*(start_exporter(config) for _ in signums))
    # Real time (the exporters are other processes): until each one's poll reaches the fake.
    deadline = time.monotonic() + 10
    while fake_vast.in_flight < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert fake_vast.in_flight == 2  # one target each: one poll in flight in each process

    async def stop(exporter, signum: int) -> None:
        started = time.monotonic()
        assert await exporter.stop(signum, timeout=5) == 0
        assert time.monotonic() - started < 5
        assert "Traceback" not in exporter.log

    await asyncio.gather(*(stop(e, signum) for e, signum in zip(exporters, signums, strict=True)))


@pytest.mark.virtual_time
async def test_metrics_negotiates_openmetrics_and_gzip(fake_vast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"})
    prometheus_accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    status, body, headers = await exporter.get(
        "/metrics", headers={"Accept": prometheus_accept, "Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"  # decoded by the client
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n") and "vastai_worker_cur_load{" in body
    assert body.count("# EOF") == 1
    status, body, headers = await exporter.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in headers
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in body and "vastai_target_poll_errors_total{" in body


@pytest.mark.virtual_time
async def test_process_and_python_metrics_in_both_formats(fake_vast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    exporter = await run_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"})
    async with aiohttp.ClientSession() as session:
        for accept in ("application/openmetrics-text;version=1.0.0", "text/plain"):
            for encoding in ("gzip", "identity"):
                headers = {"Accept": accept, "Accept-Encoding": encoding}
                async with session.get(exporter.url + "/metrics", headers=headers) as response:
                    assert response.status == 200
                    body = await response.text()
                if accept.startswith("application/openmetrics-text"):
                    families = {f.name: f for f in parse_openmetrics(body)}  # fails if malformed
                    assert body.endswith("# EOF\n") and body.count("# EOF") == 1
                else:
                    families = {f.name: f for f in text_string_to_metric_families(body)}
                rss = families["process_resident_memory_bytes"].samples[0].value
                assert 10e6 < rss < 4e9
                assert families["process_open_fds"].samples[0].value >= 3
                started = families["process_start_time_seconds"].samples[0].value
                assert 0 < started <= time.time()
                assert "process_cpu_seconds" in families and "python_info" in families
                assert "python_gc_objects_collected" in families
                assert "vastai_target_up" in families
        for _ in range(2):  # HEAD: headers only, and the connection stays usable
            async with session.head(exporter.url + "/metrics") as response:
                assert response.status == 200 and int(response.headers["Content-Length"]) > 0
                assert await response.read() == b""
        async with session.get(exporter.url + "/metrics") as response:
            assert "process_open_fds" in await response.text()
