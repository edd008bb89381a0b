"""TLS, basic auth and hot reload, with a generated certificate: in this event loop through the
CLI's start-up code, and through the real CLI where a process is the point (SIGHUP, exit codes)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
import yaml
from cryptography import x509

from exporter.config import ConfigError
from exporter.webconfig import BasicAuth, load_web_config

from .conftest import promtool
from .fakevast import FakeVast, worker, workers
from .harness import API_KEY, fast_config, parse_metrics, series

PASSWORD = "s3cret-pass"
PATHS = ["/", "/metrics", "/-/healthy", "/-/ready"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("scraper@example.test")
    files = {
        "cert": tmp_path / "server.crt",
        "key": tmp_path / "server.key",
        "ca": tmp_path / "ca.crt",
        "client": tmp_path / "client.pem",
    }
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    ca.cert_pem.write_to_path(files["ca"])
    client.private_key_and_cert_chain_pem.write_to_path(files["client"])
    return files


def tls_server_config(tls_files: dict[str, Path], **settings: object) -> dict[str, object]:
    """The server certificate and key of `tls_files`, and any other tls_server_config keys."""
    return {"cert_file": str(tls_files["cert"]), "key_file": str(tls_files["key"]), **settings}


def write_web_config(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def users() -> dict[str, str]:
    return {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()}


def client_context(ca: trustme.CA, client_pem: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_pem is not None:
        context.load_cert_chain(client_pem)
    return context


async def status_of(url: str, **kwargs: object) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        await response.read()
        return response.status


async def start_with_web_config(fake_vast: FakeVast, run_exporter, web: Path):
    fake_vast.set("endpoint", 10, workers(worker(1)))
    config = fast_config(fake_vast.url, endpoints=[{"id": 10}])
    return await run_exporter(config, "--web.config.file", str(web))


async def test_basic_auth_guards_every_path(fake_vast, run_exporter, tmp_path) -> None:
    web = write_web_config(tmp_path, {"basic_auth_users": users()})
    exporter = await start_with_web_config(fake_vast, run_exporter, web)
    good = basic("prometheus", PASSWORD)
    for path in PATHS:
        url = exporter.base_url + path
        assert await status_of(url) == 401, path
        assert await status_of(url, headers=basic("prometheus", "wrong")) == 401
        assert await status_of(url, headers=basic("nobody", PASSWORD)) == 401
        assert await status_of(url, headers={"Authorization": "Basic !!notbase64"}) == 401
    async with aiohttp.ClientSession() as session:
        async with session.get(exporter.base_url + "/metrics") as response:
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        for _ in range(20):  # the bcrypt check is cached after the first success
            async with session.get(exporter.base_url + "/metrics", headers=good) as response:
                assert response.status == 200
                assert "vastai_target_up" in await response.text()
    assert PASSWORD not in exporter.log


async def test_tls_serves_https_only(fake_vast, run_exporter, tmp_path, tls_files, ca) -> None:
    document = {"tls_server_config": tls_server_config(tls_files, min_version="TLS12")}
    exporter = await start_with_web_config(
        fake_vast, run_exporter, write_web_config(tmp_path, document)
    )
    https = exporter.base_url.replace("http://", "https://")
    assert await status_of(https + "/metrics", ssl=client_context(ca)) == 200
    with pytest.raises(aiohttp.ClientError):
        await status_of(exporter.base_url + "/metrics")  # plain HTTP is not served
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await status_of(https + "/metrics")  # an untrusted certificate is refused


async def test_tls_client_certificates_and_basic_auth_together(
    fake_vast, run_exporter, tmp_path, tls_files, ca
) -> None:
    document = {
        "tls_server_config": tls_server_config(
            tls_files,
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file=str(tls_files["ca"]),
        ),
        "basic_auth_users": users(),
    }
    exporter = await start_with_web_config(
        fake_vast, run_exporter, write_web_config(tmp_path, document)
    )
    https = exporter.base_url.replace("http://", "https://") + "/metrics"
    good = basic("prometheus", PASSWORD)
    with_cert = client_context(ca, tls_files["client"])
    assert await status_of(https, ssl=with_cert, headers=good) == 200
    assert await status_of(https, ssl=with_cert) == 401
    with pytest.raises(aiohttp.ClientError):
        await status_of(https, ssl=client_context(ca), headers=good)  # no client certificate


def test_promtool_accepts_the_web_config_format(tmp_path, tls_files) -> None:
    tool = promtool()
    document = {
        "tls_server_config": tls_server_config(
            tls_files,
            client_auth_type="VerifyClientCertIfGiven",
            client_ca_file=str(tls_files["ca"]),
            min_version="TLS13",
        ),
        "basic_auth_users": users(),
    }
    path = write_web_config(tmp_path, document)
    result = subprocess.run(
        [tool, "check", "web-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert load_web_config(str(path)).tls is not None


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"basic_auth_users": {"u": "plaintext"}}, "basic_auth_users.u"),
        ({"tls_server_config": {"cert_file": "x.crt"}}, "tls_server_config.key_file"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b"}}, "tls_server_config.cert_file"),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "SSL3"}},
            "tls_server_config.min_version",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "x"}},
            "tls_server_config.client_auth_type",
        ),
        ({"tls_server_config": {"cipher": 1}}, "tls_server_config.cipher"),
        ({"basic_auth": {}}, "basic_auth"),
    ],
)
def test_bad_web_configs_name_the_key(tmp_path, document, key) -> None:
    path = write_web_config(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert caught.value.key == key and caught.value.file == str(path)


async def test_bad_web_config_exits_2(start_exporter, tmp_path) -> None:
    web = write_web_config(tmp_path, {"basic_auth_users": {"u": "plaintext"}})
    exporter = await start_exporter(
        "endpoints: [{id: 1}]\n", "--web.config.file", str(web), wait_started=False
    )
    assert await exporter.wait() == 2
    assert "web.yaml" in exporter.log and "basic_auth_users.u" in exporter.log


# --- a live web config ----------------------------------------------------------------------


async def eventually(check, timeout: float = 10.0) -> None:
    """Until `check()` (a coroutine function) is true; the exporter re-reads within a second."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def log_count(exporter, text: str, count: int) -> None:
    async def enough() -> bool:
        return sum(text in line for line in exporter.lines) >= count

    await eventually(enough)


def port_of(exporter) -> int:
    return int(exporter.base_url.rsplit(":", 1)[1])


def served_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a new TLS connection is given."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial_in(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def swap_in(path: Path, content: bytes) -> None:
    """Replace a file at once, as cert-manager's and Kubernetes' secret updates do."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(content)
    os.replace(fresh, path)


async def web_gauge(exporter, **kwargs) -> float:
    status, body, _ = await exporter.get("/metrics", **kwargs)
    assert status == 200
    [value] = series(parse_metrics(body), WEB_GAUGE).values()
    return value


WEB_GAUGE = "vastai_exporter_web_config_last_reload_successful"


@pytest.mark.virtual_time
async def test_a_renewed_certificate_is_served_without_a_restart(
    fake_vast, run_exporter, tmp_path, tls_files, ca
) -> None:
    document = {"tls_server_config": tls_server_config(tls_files)}
    exporter = await start_with_web_config(
        fake_vast, run_exporter, write_web_config(tmp_path, document)
    )
    port, trusting = port_of(exporter), client_context(ca)
    first = serial_in(tls_files["cert"])
    assert await asyncio.to_thread(served_serial, port, trusting) == first
    renewed = ca.issue_cert("127.0.0.1", "localhost")
    swap_in(tls_files["key"], renewed.private_key_pem.bytes())
    swap_in(tls_files["cert"], renewed.cert_chain_pems[0].bytes())
    second = serial_in(tls_files["cert"])
    assert second != first
    await log_count(exporter, "web config reloaded", 1)
    assert await asyncio.to_thread(served_serial, port, trusting) == second
    https = exporter.base_url.replace("http://", "https://")
    exporter.base_url = https
    assert await web_gauge(exporter, ssl=trusting) == 1.0


@pytest.mark.virtual_time
async def test_changed_passwords_and_users_apply_without_a_restart(
    fake_vast, run_exporter, tmp_path
) -> None:
    web = write_web_config(tmp_path, {"basic_auth_users": users()})
    exporter = await start_with_web_config(fake_vast, run_exporter, web)
    old = basic("prometheus", PASSWORD)
    assert await status_of(exporter.base_url + "/metrics", headers=old) == 200

    def hashed(password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()

    changed = {"prometheus": hashed("n3w-pass"), "grafana": hashed("graf-pass")}
    web.write_text(yaml.safe_dump({"basic_auth_users": changed}))
    await log_count(exporter, "web config reloaded", 1)
    url = exporter.base_url + "/metrics"
    assert await status_of(url, headers=old) == 401  # the old password, just cached as good
    assert await status_of(url, headers=basic("prometheus", "n3w-pass")) == 200
    assert await status_of(url, headers=basic("grafana", "graf-pass")) == 200
    # and without users, no credentials are needed any more
    web.write_text(yaml.safe_dump({"http_server_config": {"headers": {"X-Frame-Options": "deny"}}}))
    await log_count(exporter, "web config reloaded", 2)
    status, _, headers = await exporter.get("/")
    assert status == 200 and headers["X-Frame-Options"] == "deny"
    assert "n3w-pass" not in exporter.log and PASSWORD not in exporter.log


@pytest.mark.virtual_time
async def test_a_broken_web_config_keeps_the_last_good_one(
    fake_vast, run_exporter, tmp_path
) -> None:
    web = write_web_config(tmp_path, {"basic_auth_users": users()})
    exporter = await start_with_web_config(fake_vast, run_exporter, web)
    good = basic("prometheus", PASSWORD)
    assert await web_gauge(exporter, headers=good) == 1.0
    good_text = web.read_text()
    web.write_text("basic_auth_users: {prometheus: plaintext}\n")
    line = await exporter.wait_for_log("web config reload failed")
    assert "level=error" in line and "basic_auth_users.prometheus" in line
    assert await status_of(exporter.base_url + "/metrics") == 401  # the old users still apply

    async def gauge_is(value: float) -> bool:
        return await web_gauge(exporter, headers=good) == value

    await eventually(lambda: gauge_is(0.0))
    _, page, _ = await exporter.get("/", headers=good)
    assert "last read refused, previous in force" in page
    web.write_text(good_text + "\n")  # fixed again
    await log_count(exporter, "web config reloaded", 1)
    await eventually(lambda: gauge_is(1.0))
    assert await exporter.stop() == 0
    assert "Traceback" not in exporter.log


@pytest.mark.virtual_time
async def test_client_ca_changes_apply_to_new_connections(
    fake_vast, run_exporter, tmp_path, tls_files, ca
) -> None:
    other_ca = trustme.CA()
    other_client = tmp_path / "other-client.pem"
    other_ca.issue_cert("grafana@example.test").private_key_and_cert_chain_pem.write_to_path(
        other_client
    )
    document = {
        "tls_server_config": tls_server_config(
            tls_files,
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file=str(tls_files["ca"]),
        )
    }
    exporter = await start_with_web_config(
        fake_vast, run_exporter, write_web_config(tmp_path, document)
    )
    https = exporter.base_url.replace("http://", "https://") + "/metrics"
    first, second = client_context(ca, tls_files["client"]), client_context(ca, other_client)
    assert await status_of(https, ssl=first) == 200
    with pytest.raises(aiohttp.ClientError):
        await status_of(https, ssl=second)
    swap_in(tls_files["ca"], other_ca.cert_pem.bytes())
    await log_count(exporter, "web config reloaded", 1)
    assert await status_of(https, ssl=second) == 200
    with pytest.raises(aiohttp.ClientError):
        await status_of(https, ssl=first)  # the old CA is no longer trusted


@pytest.mark.virtual_time
async def test_tls_cannot_be_turned_off_without_a_restart(
    fake_vast, run_exporter, tmp_path, tls_files, ca
) -> None:
    document = {"tls_server_config": tls_server_config(tls_files)}
    web = write_web_config(tmp_path, document)
    exporter = await start_with_web_config(fake_vast, run_exporter, web)
    web.write_text(yaml.safe_dump({"basic_auth_users": users()}))
    line = await exporter.wait_for_log("web config reload failed")
    assert "turning TLS on or off needs a restart" in line
    https = exporter.base_url.replace("http://", "https://") + "/metrics"
    assert await status_of(https, ssl=client_context(ca)) == 200  # still TLS, still no users


# --- hot reload ------------------------------------------------------------------------------


def worker_ids(samples: dict) -> set[str]:
    return {dict(labels)["worker_id"] for labels in series(samples, "vastai_worker_status")}


def reload_metrics(samples: dict) -> tuple[float, float]:
    [ok] = series(samples, "vastai_exporter_config_last_reload_successful").values()
    [when] = series(
        samples, "vastai_exporter_config_last_reload_success_timestamp_seconds"
    ).values()
    return ok, when


async def test_reload_by_sighup_and_http(fake_vast, run_exporter, tmp_path) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.set("endpoint", 11, workers(worker(2)))
    fake_vast.set("worker_group", 12, workers(worker(3)))
    config = fast_config(fake_vast.url, endpoints=[{"id": 10}, {"id": 11}])
    exporter = await run_exporter(config, "--web.enable-lifecycle")
    config_file = tmp_path / "config.yaml"
    first = await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1", "2"})
    assert reload_metrics(first)[0] == 1.0

    # SIGHUP: endpoint 11 removed (its series go), worker group 12 added (polled at once).
    changed = fast_config(
        fake_vast.url,
        endpoints=[{"id": 10}],
        worker_groups=[{"id": 12}],
        polling={"interval": "1h"},
    )
    config_file.write_text(yaml.safe_dump(changed))
    await exporter.reload()  # what SIGHUP does (a signal reaching it: the test below)
    after = await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1", "3"})
    assert series(after, "vastai_target_up", id="11") == {}
    assert reload_metrics(after)[1] > reload_metrics(first)[1]

    # An invalid config is refused over HTTP; the running one stays.
    config_file.write_text("polling: {interval: 0s}\nendpoints: [{id: 99}]\n")
    async with aiohttp.ClientSession() as session:
        async with session.post(exporter.base_url + "/-/reload") as response:
            assert response.status == 500
            assert "polling.interval" in await response.text()
        async with session.get(exporter.base_url + "/-/reload") as response:
            assert response.status == 405
    refused = await exporter.wait_for_metrics(lambda s: reload_metrics(s)[0] == 0.0)
    assert worker_ids(refused) == {"1", "3"}
    await exporter.wait_for_log("reload failed; keeping the running config")

    # A valid one over HTTP succeeds again.
    config_file.write_text(yaml.safe_dump(config))
    async with (
        aiohttp.ClientSession() as session,
        session.post(exporter.base_url + "/-/reload") as response,
    ):
        assert response.status == 200
    back = await exporter.wait_for_metrics(
        lambda s: worker_ids(s) == {"1", "2"} and reload_metrics(s)[0] == 1.0
    )
    assert series(back, "vastai_target_up", kind="worker_group") == {}
    assert "Traceback" not in exporter.log


async def test_reload_over_http_needs_the_lifecycle_flag(
    fake_vast, start_exporter, tmp_path
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    fake_vast.set("endpoint", 11, workers(worker(2)))
    exporter = await start_exporter(fast_config(fake_vast.url, endpoints=[{"id": 10}]))
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"})
    changed = fast_config(fake_vast.url, endpoints=[{"id": 10}, {"id": 11}])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(changed))
    async with (
        aiohttp.ClientSession() as session,
        session.post(exporter.base_url + "/-/reload") as response,
    ):
        assert response.status == 403
        assert await response.text() == "Lifecycle API is not enabled.\n"
    _, page, _ = await exporter.get("/")
    assert "--web.enable-lifecycle" in page
    assert "config reloaded" not in exporter.log
    assert exporter.proc is not None
    exporter.proc.send_signal(signal.SIGHUP)  # the signal needs no flag
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1", "2"})
    await exporter.wait_for_log("config reloaded")


async def test_reload_picks_up_a_rotated_key(fake_vast, run_exporter, tmp_path) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    key_file = tmp_path / "key"
    key_file.write_text("old-key-0000000000\n")
    config = fast_config(
        fake_vast.url, endpoints=[{"id": 10}], vast={"api_key_file": str(key_file)}
    )
    exporter = await run_exporter(config, "--web.enable-lifecycle", key=None)
    await exporter.wait_for_metrics(
        lambda s: (
            series(s, "vastai_target_poll_errors_total", reason="auth")
            and max(series(s, "vastai_target_poll_errors_total", reason="auth").values()) >= 1
        )
    )
    key_file.write_text(API_KEY + "\n")
    async with (
        aiohttp.ClientSession() as session,
        session.post(exporter.base_url + "/-/reload") as response,
    ):
        assert response.status == 200
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"})
    await asyncio.sleep(0.3)
    assert await exporter.stop() == 0
    assert API_KEY not in exporter.log and "old-key-0000000000" not in exporter.log


# --- basic auth internals, and what promtool refuses we refuse too ----------------------------


class CountingCheck:
    """bcrypt.checkpw, counted (and optionally slowed) to see what the cache saves."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        time.sleep(self.delay)
        return REAL_CHECKPW(password, hashed)


REAL_CHECKPW = bcrypt.checkpw


async def test_bcrypt_runs_once_per_credentials(monkeypatch) -> None:
    counting = CountingCheck()
    auth = BasicAuth({user: hashed.encode() for user, hashed in users().items()})
    monkeypatch.setattr("exporter.webconfig.bcrypt.checkpw", counting)
    assert all([await auth.check("prometheus", PASSWORD) for _ in range(10)])
    assert counting.calls == 1
    assert not any([await auth.check("prometheus", "nope") for _ in range(10)])
    assert counting.calls == 2  # a repeated wrong password is cached too
    assert not await auth.check("nobody", PASSWORD)  # unknown users still pay for bcrypt
    assert counting.calls == 3
    assert not await auth.check("prometheus", "x" * 73)  # past bcrypt's 72 bytes: no check
    assert counting.calls == 3
    auth.close()


async def test_a_flood_of_wrong_passwords_is_refused_without_a_backlog(monkeypatch) -> None:
    counting = CountingCheck(delay=0.1)
    auth = BasicAuth({user: hashed.encode() for user, hashed in users().items()})
    monkeypatch.setattr("exporter.webconfig.bcrypt.checkpw", counting)
    results = await asyncio.gather(*(auth.check("prometheus", f"guess-{i}") for i in range(200)))
    assert not any(results)
    # No backlog: the rest were refused at once, unchecked (a count, not a wall-clock margin).
    assert counting.calls <= 16
    assert await auth.check("prometheus", PASSWORD)  # and the right one still gets in
    auth.close()


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"basic_auth_users": {"u": "$2a$10$abc"}}, "basic_auth_users.u"),
        (
            {"http_server_config": {"headers": {"Content-Type": "text/html"}}},
            "http_server_config.headers.Content-Type",
        ),
        (
            {"tls_server_config": {"cert_file": "c", "key_file": "k", "client_ca_file": "ca"}},
            "tls_server_config.client_auth_type",
        ),
    ],
)
def test_what_promtool_refuses_we_refuse(tmp_path, document, key) -> None:
    path = write_web_config(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert caught.value.key == key
    result = subprocess.run(
        [promtool(), "check", "web-config", str(path)], capture_output=True, check=False
    )
    assert result.returncode != 0


def test_go_only_tls_settings_are_accepted_and_ignored(tmp_path, tls_files) -> None:
    document = {
        "tls_server_config": tls_server_config(
            tls_files, cipher_suites=["TLS_AES_128_GCM_SHA256"], prefer_server_cipher_suites=True
        ),
        "http_server_config": {"headers": {"X-Frame-Options": "deny"}, "http2": True},
    }
    web_config = load_web_config(str(write_web_config(tmp_path, document)))
    assert web_config.tls is not None and web_config.headers == {"X-Frame-Options": "deny"}


# --- reload details --------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_reload_shortening_the_interval_wakes_waiting_targets(
    fake_vast, run_exporter, tmp_path
) -> None:
    fake_vast.set("endpoint", 10, workers(worker(1)))
    exporter = await run_exporter(
        fast_config(fake_vast.url, endpoints=[{"id": 10}], polling={"interval": "1h"}),
        "--web.enable-lifecycle",
    )
    await exporter.wait_for_metrics(lambda s: worker_ids(s) == {"1"})
    assert len(fake_vast.requests) == 1
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            fast_config(fake_vast.url, endpoints=[{"id": 10}], polling={"interval": "100ms"})
        )
    )
    async with aiohttp.ClientSession() as session:
        replies = await asyncio.gather(
            *(session.post(exporter.base_url + "/-/reload") for _ in range(5))
        )
        assert [reply.status for reply in replies] == [200] * 5
    await asyncio.sleep(1.0)
    assert len(fake_vast.requests) >= 5  # polled every 100 ms now, not in an hour
    assert "Traceback" not in exporter.log


@pytest.mark.virtual_time
async def test_worker_cap(fake_vast, run_exporter) -> None:
    fake_vast.set("endpoint", 10, workers(*[worker(i) for i in range(1, 8)]))
    config = fast_config(
        fake_vast.url, endpoints=[{"id": 10}], polling={"max_workers_per_target": 3}
    )
    exporter = await run_exporter(config)
    samples = await exporter.wait_for_metrics(lambda s: len(worker_ids(s)) == 3)
    await asyncio.sleep(1)  # several more polls
    assert worker_ids(samples) == {"1", "2", "3"}
    warnings = [line for line in exporter.lines if "max_workers_per_target" in line]
    assert len(warnings) == 1 and "workers=7" in warnings[0]


async def test_startup_errors_are_json_with_log_format_json(start_exporter) -> None:
    exporter = await start_exporter(
        "endpoints: [{id: x}]\n", "--log.format", "json", wait_started=False
    )
    assert await exporter.wait() == 2
    [line] = [line for line in exporter.lines if line.strip()]
    record = json.loads(line)
    assert record["level"] == "error" and "endpoints[0].id" in record["error"]
