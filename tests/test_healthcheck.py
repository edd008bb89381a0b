"""exporter.healthcheck, the container's HEALTHCHECK: where it probes, and its exit status."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import healthcheck
from exporter.healthcheck import health_url, is_exporter, listen_address

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (":9840", "http://127.0.0.1:9840/-/healthy"),
        ("0.0.0.0:9100", "http://127.0.0.1:9100/-/healthy"),
        ("127.0.0.1:19840", "http://127.0.0.1:19840/-/healthy"),
        ("[::]:9840", "http://[::1]:9840/-/healthy"),
        ("[::1]:9840", "http://[::1]:9840/-/healthy"),
        ("localhost:9840", "http://localhost:9840/-/healthy"),
    ],
)
def test_health_url(address: str, url: str) -> None:
    assert health_url(address) == url


def test_listen_address_from_argv() -> None:
    assert listen_address(["vastai-exporter", "--demo"]) is None
    assert listen_address(["x", "--web.listen-address", "127.0.0.1:1"]) == "127.0.0.1:1"
    assert listen_address(["x", "--web.listen-address=:2", "--demo"]) == ":2"


def test_is_exporter() -> None:
    venv = "/opt/venv/bin"
    assert is_exporter([f"{venv}/python", f"{venv}/vastai-exporter", "--demo"])
    assert is_exporter(["/usr/bin/python3", "-m", "exporter", "--demo"])
    assert not is_exporter([f"{venv}/python", f"{venv}/vastai-exporter", "simulate"])
    assert not is_exporter([f"{venv}/python", "-m", "exporter.healthcheck"])
    assert not is_exporter(["/bin/sh"])


def test_exporter_argv_reads_proc(tmp_path: Path) -> None:
    for pid, argv in ((1, [b"/bin/sh"]), (7, [b"python3", b"-m", b"exporter", b"--demo"])):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(argv) + b"\0")
    (tmp_path / "self").mkdir()
    assert healthcheck.exporter_argv(tmp_path) == ["python3", "-m", "exporter", "--demo"]


def run_probe(url: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VASTAI_EXPORTER_HEALTHCHECK_URL": url}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.healthcheck"], env=env, capture_output=True, timeout=30
    )
    return proc.returncode


async def test_exit_status_follows_the_exporter(run_exporter) -> None:
    exporter = await run_exporter(None, "--demo", key=None)
    # the probe is a process of its own; the exporter answers it from this event loop
    assert await asyncio.to_thread(run_probe, exporter.base_url + "/-/healthy") == 0
    await exporter.stop()
    assert await asyncio.to_thread(run_probe, exporter.base_url + "/-/healthy") == 1
