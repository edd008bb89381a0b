"""Vast's own CLI (`vastai` on PyPI) in a virtualenv of its own, run against the simulator.

Why its own virtualenv: vastai pins exact versions (cryptography==49.0.0, pillow==12.2.0) that
must never be installed into the project's environment. It is built once per vastai version
(and Python version) under the system's temporary directory, under a lock, so that later runs,
and concurrent ones, reuse it. Building it needs PyPI: without PyPI the test skips with the
reason, except under CI=true, where it fails.

How it runs: importing vastai costs about two seconds of CPU (it imports its serverless
server), so one process imports the CLI once and forks a child per command; each child runs the
CLI's own entry point, `vastai.cli.main:main` (what the `vastai` script runs), with its argv, its
stdout and its stderr, concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

VERSION = "1.9.1"
PYTHON = f"py{sys.version_info.major}.{sys.version_info.minor}"
CACHE = Path(tempfile.gettempdir()) / f"vastai-exporter-vastai-{VERSION}-{PYTHON}"
ENTRY_POINT = "from vastai.cli.main import main"  # the console script's import

# The forking runner, run by the virtualenv's Python: input {"commands": [argv, ...],
# "queries": [str, ...]} on stdin; output, on stdout, each command's exit code, stdout and
# stderr, and what vastai's parse_query (as `search offers` calls it) makes of each query.
_RUNNER = r"""
import json, os, sys, tempfile, traceback
import vastai.cli.main as cli
from vastai.api import query as q
# The command modules that vastai 1.9.1's main() imports (vastai/cli/main.py), imported here
# once rather than in every child; importing one registers its commands, as main() would.
from vastai.cli.commands import (instances, offers, machines, teams, keys, endpoints, billing,
    storage, auth, misc, deployments, metrics, benchmarks, price_increase, repl, update, uninstall)

def child(argv, out, err):
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.argv = ["vastai", *argv]
    try:
        code = cli.main()
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)

work = json.load(sys.stdin)
parsed = [q.parse_query(text, {}, q.offers_fields, q.offers_alias, q.offers_mult)
          for text in work["queries"]]
children = []
for argv in work["commands"]:
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        child(argv, out, err)
    children.append((pid, out, err))
results = []
for pid, out, err in children:
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    results.append({"rc": os.waitstatus_to_exitcode(status),
                    "stdout": out.read().decode(), "stderr": err.read().decode()})
json.dump({"commands": results, "queries": parsed}, sys.stdout)
"""


@dataclass(frozen=True)
class Run:
    """One CLI command's outcome."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"vastai {' '.join(self.argv)} -> {self.rc}\nstdout: {self.stdout[:2000]}\n" + (
            f"stderr: {self.stderr[-2000:]}"
        )


def skip_or_fail(message: str) -> None:
    """Skip with a one-line reason; under CI=true the test must run, so fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


def cli_python() -> Path:
    """The Python of the cached virtualenv holding vastai==VERSION, built if missing."""
    python = CACHE / "bin" / "python"
    ready = CACHE / "ready"
    if _is_ready(ready, python):
        return python
    with _locked(CACHE.with_name(CACHE.name + ".lock")):
        if not _is_ready(ready, python):
            _build(python, ready)
    return python


def _is_ready(ready: Path, python: Path) -> bool:
    return ready.is_file() and ready.read_text() == VERSION and python.exists()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _index() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/"


def _reachable(url: str) -> str | None:
    """None if `url` answers, else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def _build(python: Path, ready: Path) -> None:
    """Build the virtualenv in place (under the lock), the marker last."""
    why = _reachable(_index() + "vastai/")
    if why is not None:
        skip_or_fail(
            f"PyPI ({_index()}) cannot be reached ({why}); Vast's CLI, vastai=={VERSION}, "
            "is installed from it once into a virtualenv of its own"
        )
    shutil.rmtree(CACHE, ignore_errors=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(CACHE)], check=True)
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-input"]
    install += ["--disable-pip-version-check", "--no-compile", "-q", f"vastai=={VERSION}"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"pip could not install vastai=={VERSION}:\n{done.stderr[-3000:]}")
    ready.write_text(VERSION)
    print(f"built {CACHE} in {time.monotonic() - started:.1f} s")


async def run_cli(
    python: Path, commands: list[list[str]], queries: list[str], home: Path
) -> tuple[list[Run], list[Any]]:
    """Each command's outcome, run concurrently, and vastai's parse of each query."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # the CLI keeps its key, role and update check there
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "VASTAI_NO_UPDATE_CHECK": "1",  # no manifest request to the internet
        "LANG": "C.UTF-8",
    }
    process = await asyncio.create_subprocess_exec(
        str(python), "-c", _RUNNER, env=env, start_new_session=True,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    work = json.dumps({"commands": commands, "queries": queries}).encode()
    try:
        out, err = await asyncio.wait_for(process.communicate(work), 90)
    except TimeoutError:
        os.killpg(process.pid, 9)
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()[-3000:]
    answer = json.loads(out)
    runs = [Run(tuple(argv), **r) for argv, r in zip(commands, answer["commands"], strict=True)]
    return runs, answer["queries"]
