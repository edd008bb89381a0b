"""The container image, built and run in a real Docker engine (issue 12).

The image is built once per module from the repository's files (what a clean checkout holds:
tracked files and new files git does not ignore; never .venv, caches or a local config.yaml)
with `docker build --network host --build-arg BASE_IMAGE=<stand-in>`. The stand-in base is
`$VASTAI_BASE_IMAGE` (default vastai-exporter-base:debian); when it is missing it is built with
deploy/build-base-image.sh (root, debootstrap). Containers use host networking only and listen on
127.0.0.1, each on a port of its own.

The image holds exactly the versions of requirements.lock (and the package).

Without a reachable Docker engine these tests skip with a one-line reason, except under CI=true,
where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from exporter import __version__

from .fakevast import FakeVast, worker, workers
from .harness import API_KEY, parse_metrics, series
from .lockfile import read_lock

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("VASTAI_BASE_IMAGE", "vastai-exporter-base:debian")
IMAGE = os.environ.get("VASTAI_TEST_IMAGE", "vastai-exporter:test")
BUILD_SCRIPT = ROOT / "deploy" / "build-base-image.sh"
MAX_ADDED_BYTES = 80 * 1000 * 1000  # the layers the Dockerfile adds over the base
HARDENED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]

pytestmark = pytest.mark.timeout(900)


def skip_or_fail(message: str) -> None:
    """Skip with a one-line reason; under CI=true the tests must run, so fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.returncode}\n{proc.stderr}")
    return proc


def require_docker() -> None:
    if shutil.which("docker") is None:
        skip_or_fail("docker is not installed (Debian package 'docker.io')")
    try:
        proc = docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None or proc.returncode != 0:
        skip_or_fail("no Docker engine can be reached (start one: dockerd --bridge=none)")


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False).returncode == 0


def ensure_base_image() -> None:
    if image_exists(BASE_IMAGE):
        return
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        skip_or_fail(f"base image {BASE_IMAGE} is missing; build it as root with {BUILD_SCRIPT}")
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), BASE_IMAGE], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, f"{BUILD_SCRIPT} failed:\n{proc.stdout}\n{proc.stderr}"


def clean_checkout(dest: Path) -> Path:
    """Copy what a clean checkout holds (no ignored files) to dest."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        source = ROOT / raw.decode()
        if source.is_file():
            target = dest / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


@dataclass
class Build:
    returncode: int
    output: str
    seconds: float


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    require_docker()
    ensure_base_image()
    context = clean_checkout(tmp_path_factory.mktemp("checkout"))
    started = time.monotonic()
    proc = subprocess.run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-t",
            IMAGE,
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return Build(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def image(build: Build) -> str:
    if build.returncode != 0:
        pytest.fail(f"the image did not build:\n{build.output[-3000:]}")
    return IMAGE


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Ids of the containers a test starts; removed at the end."""
    started: list[str] = []
    yield started
    for cid in started:
        docker("rm", "-f", "-v", cid, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_detached(containers: list[str], image: str, *args: str, docker_args=()) -> str:
    proc = docker("run", "-d", "--network", "host", *docker_args, image, *args)
    cid = proc.stdout.strip()
    containers.append(cid)
    return cid


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError) as exc:  # not listening yet, or a partial answer
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout}s (last error: {last_error})")


def inspect(cid: str) -> dict:
    return json.loads(docker("inspect", cid).stdout)[0]


def worker_status_series(text: str) -> dict:
    return series(parse_metrics(text), "vastai_worker_status")


def local_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The same command outside the container, for comparison."""
    base = {k: v for k, v in os.environ.items() if k != "VAST_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def layer_sizes(image: str) -> list[int]:
    """Bytes of each layer, newest first, as `docker history` lists them."""
    history = docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}", image)
    return [int(size) for size in history.stdout.split()]


# ------------------------------------------------------------------------------------ tests


def test_builds_from_a_clean_checkout_and_adds_under_80_mb(build: Build) -> None:
    assert build.returncode == 0, build.output[-3000:]
    image_layers, base_layers = layer_sizes(IMAGE), layer_sizes(BASE_IMAGE)
    # docker history lists the newest layer first: the base's layers are the last ones
    assert image_layers[len(image_layers) - len(base_layers) :] == base_layers, "built on the base"
    added = sum(image_layers[: len(image_layers) - len(base_layers)])
    print(f"build {build.seconds:.1f}s, added layers {added / 1e6:.1f} MB")
    assert 0 < added < MAX_ADDED_BYTES, f"the Dockerfile adds {added / 1e6:.1f} MB"


# every distribution the virtualenv's python sees, as JSON {name: version}
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


def test_image_holds_exactly_the_locked_versions(image) -> None:
    """The virtualenv holds the versions of requirements.lock and the package itself: nothing
    more (pip and setuptools removed), nothing less, no other version."""
    proc = docker(
        "run", "--rm", "--network", "host", *HARDENED,
        "--entrypoint", "/opt/venv/bin/python", image, "-c", LIST_DISTRIBUTIONS,
    )  # fmt: skip
    installed = {canonicalize_name(name): v for name, v in json.loads(proc.stdout).items()}
    locked = {name: entry.version for name, entry in read_lock().items()}
    assert installed == {**locked, "vastai-exporter": __version__}
    print(f"image: {len(locked)} locked packages and vastai-exporter {__version__}")


def test_hardened_demo_runs_as_10001_and_serves_15_workers_in_10s(image, containers) -> None:
    port = free_port()
    started = time.monotonic()
    cid = run_detached(
        containers,
        image,
        "--demo",
        f"--web.listen-address=127.0.0.1:{port}",
        docker_args=["--user", "10001:10001", *HARDENED],
    )

    def enough_workers() -> int:
        _, text = http_get(f"http://127.0.0.1:{port}/metrics")
        count = len(worker_status_series(text))
        return count if count >= 15 else 0

    count = wait_for(enough_workers, 10 - (time.monotonic() - started), "15 worker series")
    assert count >= 15
    state = inspect(cid)
    assert state["State"]["Running"] is True
    assert state["Config"]["User"] == "10001:10001"
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert state["HostConfig"]["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in state["HostConfig"]["SecurityOpt"]
    # the image's own user, not only the --user flag: PID 1 runs as 10001 without it too
    ids = docker("exec", cid, "python3", "-c", "import os; print(os.getuid(), os.getgid())")
    assert ids.stdout.split() == ["10001", "10001"]
    assert inspect_image_user(image) == "10001:10001"


def inspect_image_user(image: str) -> str:
    return json.loads(docker("image", "inspect", image).stdout)[0]["Config"]["User"]


def test_healthcheck_turns_healthy(image, containers, record_property) -> None:
    port = free_port()  # not 9840: the check follows --web.listen-address
    started = time.monotonic()
    cid = run_detached(
        containers,
        image,
        "--demo",
        f"--web.listen-address=127.0.0.1:{port}",
        docker_args=[
            *HARDENED,
            "--health-interval=1s",
            "--health-timeout=4s",
            "--health-start-period=1s",
            "--health-retries=3",
        ],
    )

    def health() -> str:
        status = inspect(cid)["State"]["Health"]["Status"]
        return status if status == "healthy" else ""

    wait_for(health, 30, "healthy", interval=0.2)
    seconds = time.monotonic() - started
    record_property("seconds_to_healthy", round(seconds, 2))
    print(f"healthy {seconds:.1f}s after docker run")
    log = inspect(cid)["State"]["Health"]["Log"]
    assert log and log[-1]["ExitCode"] == 0


def test_docker_stop_exits_0_within_5s(image, containers) -> None:
    port = free_port()
    cid = run_detached(
        containers,
        image,
        "--demo",
        f"--web.listen-address=127.0.0.1:{port}",
        docker_args=HARDENED,
    )
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 10, "ready")
    started = time.monotonic()
    docker("stop", cid, timeout=30)
    elapsed = time.monotonic() - started
    state = inspect(cid)["State"]
    assert state["Running"] is False
    assert state["ExitCode"] == 0, state
    assert state["OOMKilled"] is False
    assert elapsed < 5, f"docker stop took {elapsed:.1f}s"


async def test_polls_a_fake_vast_api_with_a_mounted_config_and_key(
    image, containers, tmp_path
) -> None:
    fake = await FakeVast(API_KEY).start()
    try:
        fake.set("endpoint", 10, workers(worker(1), worker(2, status="loading")))
        fake.set("worker_group", 20, workers(worker(3)))
        port = free_port()
        config = {
            "vast": {
                "api_url": fake.url,
                "console_url": fake.url,
                "api_key_file": "/run/secrets/vast_api_key",
                "timeout": "2s",
            },
            "polling": {"interval": "1s"},
            "endpoints": [{"id": 10, "name": "llm"}],
            "worker_groups": [{"id": 20, "endpoint_id": 10}],
        }
        config_file = tmp_path / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        key_file = tmp_path / "vast_api_key"
        key_file.write_text(API_KEY + "\n")
        for path in (config_file, key_file):
            path.chmod(0o644)  # readable by uid 10001 through the bind mount
        cid = await asyncio.to_thread(
            run_detached,
            containers,
            image,
            "--config.file=/etc/vastai-exporter/config.yaml",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=debug",
            docker_args=[
                *HARDENED,
                "-v",
                f"{config_file}:/etc/vastai-exporter/config.yaml:ro",
                "-v",
                f"{key_file}:/run/secrets/vast_api_key:ro",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        found: set[str] = set()
        text = ""
        while time.monotonic() < deadline and found != {"1", "2", "3"}:
            try:
                _, text = await asyncio.to_thread(http_get, f"{url}/metrics")
            except OSError:
                text = ""
            found = {
                dict(labels)["worker_id"]
                for labels in worker_status_series(text)
                if dict(labels)["endpoint_id"] == "10"
            }
            await asyncio.sleep(0.2)
        assert found == {"1", "2", "3"}, text
        samples = parse_metrics(text)
        assert series(samples, "vastai_target_up", kind="endpoint", id="10") == {
            frozenset({("kind", "endpoint"), ("id", "10"), ("name", "llm")}): 1.0
        }
        # the key from the mounted file went to the fake API, in the Authorization header only
        sent = fake.requests
        assert sent and all(r.headers.get("Authorization") == f"Bearer {API_KEY}" for r in sent)
        _, page = await asyncio.to_thread(http_get, f"{url}/")
        logs = await asyncio.to_thread(docker, "logs", cid)
        log_text = logs.stdout + logs.stderr
        assert "first poll round done" in log_text
        for where, content in (("docker logs", log_text), ("/metrics", text), ("/", page)):
            assert API_KEY not in content, f"the key appears in {where}"
    finally:
        await fake.close()


def test_version_and_check_config_behave_as_outside(image, tmp_path) -> None:
    inside = docker("run", "--rm", "--network", "host", *HARDENED, image, "--version")
    outside = local_cli("--version")
    assert (inside.returncode, inside.stdout) == (outside.returncode, outside.stdout)
    assert inside.returncode == 0 and inside.stdout.startswith("vastai-exporter ")

    config = tmp_path / "config.yaml"
    config.write_text("endpoints: [{id: 1}, {id: 2}]\nworker_groups: [{id: 3}]\n")
    config.chmod(0o644)
    mount = ["-v", f"{config}:/etc/vastai-exporter/config.yaml:ro"]
    in_path = "/etc/vastai-exporter/config.yaml"

    def both(key: str | None) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        env_args = ["-e", f"VAST_API_KEY={key}"] if key else []
        # the image's CMD names the config file; --check-config replaces CMD, so name it again
        inside = docker(
            "run", "--rm", "--network", "host", *HARDENED, *mount, *env_args, image,
            f"--config.file={in_path}", "--check-config",
            check=False,
        )  # fmt: skip
        outside = local_cli(
            f"--config.file={config}",
            "--check-config",
            env={"VAST_API_KEY": key} if key else None,
        )
        return inside, outside

    inside, outside = both(API_KEY)
    assert inside.returncode == outside.returncode == 0, inside.stderr
    assert inside.stdout.replace(in_path, "CONFIG") == outside.stdout.replace(str(config), "CONFIG")
    assert "OK (3 targets, API key found)" in inside.stdout

    inside, outside = both(None)
    assert inside.returncode == outside.returncode == 2
    assert "VAST_API_KEY" in inside.stderr and "VAST_API_KEY" in outside.stderr

    # a missing config file: exit 2 and the hint, as outside
    inside = docker("run", "--rm", "--network", "host", *HARDENED, image, check=False)
    outside = local_cli(f"--config.file={tmp_path / 'none.yaml'}")
    assert inside.returncode == outside.returncode == 2
    for err in (inside.stderr, outside.stderr):
        assert "file not found" in err and "--demo" in err and "config.example.yaml" in err
