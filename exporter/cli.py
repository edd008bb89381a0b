"""Command line: flags, exit codes, and the lifetime of one exporter process.

Exit status: 0 after SIGTERM/SIGINT, 2 for bad flags, config or missing key (a short message, no
traceback), 1 for a failure at run time such as a port in use.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass

from aiohttp import web

from . import __version__, simulator
from .config import (
    Config,
    ConfigError,
    PollingSettings,
    Target,
    VastSettings,
    load_config,
    resolve_api_key,
)
from .exposition import MetricsCache
from .logs import LEVELS, setup_logging
from .scheduler import Scheduler
from .server import ExporterApp
from .vast import VastClient, create_session

log = logging.getLogger("exporter")

PROG = "vastai-exporter"
DEFAULT_PORT = 9840
SHUTDOWN_TIMEOUT = 2.0  # for HTTP requests in flight
SHUTDOWN_DEADLINE = 4.5  # the whole shutdown; the contract is 5 s
DEMO_API_KEY = "demo-key-not-a-secret"


class UsageError(Exception):
    """Bad command-line flags (exit 2)."""


class StartupError(Exception):
    """The exporter could not start, e.g. the port is taken (exit 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Prometheus exporter for Vast.ai Serverless endpoints and worker groups.",
        epilog=f"Run '{PROG} simulate --help' for the simulated Vast API used by --demo.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default="config.yaml",
        metavar="PATH",
        help="YAML configuration file (default: config.yaml)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=f":{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help=f"address to serve on (default: :{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=list(LEVELS),
        help="log level (default: info)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=["logfmt", "json"],
        help="log format on stderr (default: logfmt)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="poll a built-in simulated Vast API; needs no key and no config",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config file and find the API key, then exit 0 (valid) or 2",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


@dataclass(frozen=True)
class ListenAddress:
    host: str | None  # None: every interface
    port: int


def parse_listen_address(value: str) -> ListenAddress:
    """`:9840`, `0.0.0.0:9840`, `127.0.0.1:9840`, `[::1]:9840` or `localhost:9840`."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--web.listen-address: expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return ListenAddress(host or None, int(port_text))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        return simulator.run_simulator(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        listen = parse_listen_address(args.listen_address)
    except UsageError as exc:
        return _fail(f"{exc} (see --help)")
    if args.version:
        print(f"{PROG} {__version__}")
        return 0
    redactor = setup_logging(args.log_level, args.log_format)
    if args.demo:
        return _run(None, DEMO_API_KEY, listen)
    try:
        config = load_config(args.config_file)
        api_key = resolve_api_key(config)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.check_config:
        print(f"{args.config_file}: OK ({len(config.targets)} targets, API key found)")
        return 0
    redactor.add_secret(api_key)
    return _run(config, api_key, listen)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _run(config: Config | None, api_key: str, listen: ListenAddress) -> int:
    try:
        asyncio.run(serve(config, api_key, listen))
    except StartupError as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return 1
    except Exception:
        log.exception("exporter failed")
        return 1
    return 0


def demo_config(api_url: str) -> Config:
    """What --demo polls: every endpoint and worker group of the simulator, every 2 s."""
    demo = simulator.demo_targets()
    names = {t.id: t.name for t in demo if t.kind == "endpoint"}
    targets = tuple(
        Target(t.kind, t.id, t.name, t.endpoint_id, names.get(t.endpoint_id, ""))
        if t.kind == "worker_group"
        else Target(t.kind, t.id, t.name, t.id, t.name)
        for t in demo
    )
    return Config(
        vast=VastSettings(api_url=api_url, console_url=api_url, timeout=5.0),
        polling=PollingSettings(interval=2.0, concurrency=8, stale_after=60.0),
        targets=targets,
        source="--demo",
    )


async def serve(config: Config | None, api_key: str, listen: ListenAddress) -> None:
    """Run until SIGTERM/SIGINT: poll, render, serve; then stop everything within seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _request_stop, stop)
    cleanups: list = []
    try:
        if config is None:
            sim_runner, sim_url = await simulator.start_simulator("127.0.0.1", 0)
            cleanups.append(sim_runner.cleanup)
            config = demo_config(sim_url)
            log.info(
                "demo mode: polling the built-in simulated Vast API",
                extra={"fields": {"url": sim_url}},
            )
        await _serve_config(config, api_key, listen, stop, cleanups)
    finally:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("error while shutting down")


def _request_stop(stop: asyncio.Event) -> None:
    """First signal: stop gracefully, with a deadline. A second signal: exit at once."""
    if stop.is_set():
        _force_exit("second signal")
        return
    stop.set()
    # A poll stuck in a thread (a DNS lookup, say) cannot be cancelled: never wait on it.
    timer = threading.Timer(SHUTDOWN_DEADLINE, _force_exit, args=("shutdown deadline passed",))
    timer.daemon = True
    timer.start()


def _force_exit(why: str) -> None:
    log.warning("exiting without finishing the shutdown", extra={"fields": {"why": why}})
    logging.shutdown()
    os._exit(0)


async def _serve_config(
    config: Config, api_key: str, listen: ListenAddress, stop: asyncio.Event, cleanups: list
) -> None:
    session = create_session(config.polling.concurrency)
    cleanups.append(session.close)
    client = VastClient(session, config.vast.api_url, api_key, config.vast.timeout)
    polling = config.polling
    cache = MetricsCache(
        lambda: scheduler.states(),
        polling.stale_after,
        refresh_every=min(polling.interval, polling.stale_after),
    )
    scheduler = Scheduler(client.fetch_workers, polling, cache.mark_changed)
    cleanups.append(scheduler.stop)
    runner = web.AppRunner(
        ExporterApp(cache).build(),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    cleanups.append(runner.cleanup)
    try:
        await web.TCPSite(runner, listen.host, listen.port).start()
    except OSError as exc:
        where = f"{listen.host or ''}:{listen.port}"
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    bound = ",".join(_format_address(address) for address in runner.addresses)
    log.info(
        "vastai-exporter started",
        extra={
            "fields": {
                "version": __version__,
                "listen": bound,
                "targets": len(config.targets),
                "interval": f"{polling.interval:g}s",
                "config": config.source,
            }
        },
    )
    render_task = asyncio.create_task(cache.run(), name="render")
    cleanups.append(lambda: _cancel(render_task))
    scheduler.set_targets(config.targets)
    await stop.wait()
    log.info("shutting down")


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
