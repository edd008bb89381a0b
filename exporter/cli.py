"""Command line: flags, exit codes, and the lifetime of one exporter process.

Exit status: 0 after SIGTERM/SIGINT, 2 for bad flags, config or missing key (a short message, no
traceback), 1 for a failure at run time such as a port in use.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from . import __version__
from .config import Config, ConfigError, config_schema, load_config, resolve_api_key
from .listen import ListenAddress, UsageError, parse_listen_address
from .logs import LEVELS, RedactingFilter, setup_logging
from .reads import ACCOUNT_READS
from .server import ExporterApp
from .service import Exporter
from .settings import PollingSettings, VastSettings
from .targets import Kind, Shard, Target
from .webconfig import LiveWebConfig

log = logging.getLogger("exporter")

PROG = "vastai-exporter"
DEFAULT_PORT = 9840
READ_KINDS = {read.kind for read in ACCOUNT_READS}  # kinds of the account reads' targets
SHUTDOWN_TIMEOUT = 2.0  # for HTTP requests in flight
SHUTDOWN_DEADLINE = 4.5  # the whole shutdown; the contract is 5 s
GIL_SWITCH_INTERVAL = 0.00025
DEMO_API_KEY = "demo-key-not-a-secret"


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
        "--web.config.file",
        dest="web_config",
        default="",
        metavar="PATH",
        help="exporter-toolkit web config: TLS and basic auth (promtool check web-config format)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="serve POST /-/reload (off by default: 403; SIGHUP always reloads)",
    )
    parser.add_argument(
        "--shard.index",
        dest="shard_index",
        type=int,
        default=0,
        metavar="I",
        help="this replica's shard, 0 <= I < N (default 0)",
    )
    parser.add_argument(
        "--shard.count",
        dest="shard_count",
        type=int,
        default=1,
        metavar="N",
        help="replicas splitting the targets by a stable hash of kind/id (default 1)",
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
    parser.add_argument(
        "--config.schema",
        dest="config_schema",
        action="store_true",
        help="print the JSON Schema of the config file (for editors) and exit",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


@dataclass(frozen=True)
class RunOptions:
    """What a run needs besides the config: where to reload it from, TLS/auth, the redactor."""

    config_path: str | None
    redactor: RedactingFilter
    web_config: LiveWebConfig | None = None  # --web.config.file, watched for changes
    shard: Shard = field(default_factory=Shard)
    lifecycle: bool = False  # --web.enable-lifecycle: POST /-/reload is served


def parse_shard(index: int, count: int) -> Shard:
    if count < 1:
        raise UsageError(f"--shard.count: must be at least 1, got {count}")
    if not 0 <= index < count:
        raise UsageError(f"--shard.index: must be 0 <= I < {count}, got {index}")
    return Shard(index, count)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        from .sim import run_simulator  # the simulator is loaded only when asked for

        return run_simulator(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        listen = parse_listen_address(args.listen_address)
        shard = parse_shard(args.shard_index, args.shard_count)
    except UsageError as exc:
        return _fail(f"{exc} (see --help)")
    if args.version:
        print(f"{PROG} {__version__}")
        return 0
    if args.config_schema:
        return _print(json.dumps(config_schema(), indent=2))
    redactor = setup_logging(args.log_level, args.log_format)
    try:
        web_config = LiveWebConfig(args.web_config) if args.web_config else None
        if args.demo:
            options = RunOptions(None, redactor, web_config, shard, args.enable_lifecycle)
            return _run(None, DEMO_API_KEY, listen, options)
        config = load_config(args.config_file)
        api_key = resolve_api_key(config)
    except ConfigError as exc:
        log.error("invalid configuration", extra={"fields": {"error": str(exc)}})
        return 2
    if args.check_config:
        print(f"{args.config_file}: OK ({len(config.targets)} targets, API key found)")
        return 0
    redactor.add_secret(api_key)
    options = RunOptions(args.config_file, redactor, web_config, shard, args.enable_lifecycle)
    return _run(config, api_key, listen, options)


def _print(text: str) -> int:
    """Print to stdout; a reader that stops early (`| head`) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _run(config: Config | None, api_key: str, listen: ListenAddress, options: RunOptions) -> int:
    # Rendering runs in a thread; a 0.25 ms GIL switch interval (5 ms by default) hands the
    # event loop back sooner, so health checks and scrapes stay fast while a large render runs.
    # The loop gives the GIL up at every socket call, and waits up to this long to get it back
    # from the render thread each time: at 1 ms, a request's handler of 1 ms of CPU took 10 to
    # 15 ms while a render ran (10,000 workers).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    # Everything imported and configured so far lives as long as the process: moved out of the
    # garbage collector's generations, a full collection no longer walks its ~60,000 objects
    # (tens of ms, holding the GIL, wherever it happens to trigger) while polls land.
    gc.collect()
    gc.freeze()
    try:
        asyncio.run(serve(config, api_key, listen, options))
    except StartupError as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return 1
    except Exception:
        log.exception("exporter failed")
        return 1
    return 0


def demo_config(api_url: str) -> Config:
    """What --demo polls, every 2 s: the simulator's endpoints, configured as a user would,
    and every account read with its demo settings (its worker groups found by discovery)."""
    from . import sim

    endpoints = tuple(
        Target(Kind.ENDPOINT, t.id, t.name, t.id, t.name)
        for t in sim.demo_targets()
        if t.kind == Kind.ENDPOINT
    )
    return Config(
        vast=VastSettings(api_url=api_url, console_url=api_url, timeout=5.0),
        polling=PollingSettings(interval=2.0, concurrency=8, stale_after=60.0),
        targets=endpoints,
        source="--demo",
        **{read.section: read.settings_type(**read.demo) for read in ACCOUNT_READS},
    )


async def serve(
    config: Config | None,
    api_key: str,
    listen: ListenAddress,
    options: RunOptions,
) -> None:
    """Run until SIGTERM/SIGINT: poll, render, serve; then stop everything within seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _request_stop, stop, signum)
    cleanups: list[Callable[[], Awaitable[object]]] = []
    try:
        if config is None:
            from . import sim  # the simulator is loaded only for --demo

            sim_runner, sim_url = await sim.start_simulator("127.0.0.1", 0)
            cleanups.append(sim_runner.cleanup)
            config = demo_config(sim_url)
            log.info(
                "demo mode: polling the built-in simulated Vast API",
                extra={"fields": {"url": sim_url}},
            )
        await _serve_config(config, api_key, listen, options, stop, cleanups)
    finally:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("error while shutting down")


def _request_stop(stop: asyncio.Event, signum: int = signal.SIGTERM) -> None:
    """First signal: stop gracefully, with a deadline. A second Ctrl-C (SIGINT): exit at once.

    A repeated SIGTERM is ignored: `timeout` and some supervisors deliver it twice at once.
    """
    if stop.is_set():
        if signum == signal.SIGINT:
            _force_exit("second interrupt")
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
    config: Config,
    api_key: str,
    listen: ListenAddress,
    options: RunOptions,
    stop: asyncio.Event,
    cleanups: list[Callable[[], Awaitable[object]]],
) -> None:
    await start_serving(config, api_key, listen, options, cleanups)
    await stop.wait()
    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    log.info("shutting down")


@dataclass(frozen=True)
class Serving:
    """A started exporter and its HTTP server (see `start_serving`)."""

    exporter: Exporter
    runner: web.AppRunner
    reload: Callable[[], Awaitable[str | None]]
    listen: str  # the bound addresses, as logged


async def start_serving(
    config: Config,
    api_key: str,
    listen: ListenAddress,
    options: RunOptions,
    cleanups: list[Callable[[], Awaitable[object]]],
    sighup: bool = True,
) -> Serving:
    """Build and start the exporter and its HTTP server, and log the start-up line; what to
    undo is appended to `cleanups` (run in reverse). `sighup`: SIGHUP reloads (the CLI's);
    tests running the exporter in their own event loop leave it off."""
    exporter = Exporter(
        config, api_key, options.config_path, options.redactor.add_secret, options.shard
    )
    cleanups.append(exporter.close)
    live = options.web_config
    if live is not None:
        live.on_status = lambda successful: _web_config_status(exporter, successful)

    async def reload() -> str | None:
        """SIGHUP or POST /-/reload: the web config too, if it changed; then the config."""
        if live is not None:
            try:
                await live.check()
            except Exception:  # the config reload goes ahead
                log.exception("web config: checking for changes failed")
        return await exporter.reload()

    app = ExporterApp(
        exporter.cache,
        reload,
        live.auth if live is not None else None,
        (lambda: live.headers) if live is not None else dict,
        options.redactor.redact,
        lifecycle=options.lifecycle,
        settings=lambda: _settings(exporter, options),
    )
    runner = web.AppRunner(app.build(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    cleanups.append(runner.cleanup)
    tls = live.context if live is not None else None
    try:
        await web.TCPSite(runner, listen.host, listen.port, ssl_context=tls).start()
    except OSError as exc:
        where = f"{listen.host or ''}:{listen.port}"
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    if live is not None:
        watcher = asyncio.create_task(live.run(), name="web config")
        cleanups.append(lambda: _cancel(watcher))
        cleanups.append(_closer(live))
    if sighup:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_soon, reload)
    exporter.start()
    bound = ",".join(_format_address(address) for address in runner.addresses)
    states = exporter.states()
    fields = {
        "version": __version__,
        "listen": bound,
        "tls": tls is not None,
        "basic_auth": live is not None and live.auth.enabled,
        # every target known now, the account reads (ACCOUNT_READS) included; discovered ones
        # follow the first listing, and the first-round line counts them
        "targets": len(states),
        "account_reads": sum(state.target.kind in READ_KINDS for state in states),
        "discovery": config.discovery.enabled,
        "shard": f"{options.shard.index}/{options.shard.count}",
        "interval": f"{config.polling.interval:g}s",
        "config": config.source,
        "lifecycle": options.lifecycle,
    }
    log.info("vastai-exporter started", extra={"fields": fields})
    return Serving(exporter, runner, reload, bound)


def _settings(exporter: Exporter, options: RunOptions) -> list[tuple[str, str]]:
    lifecycle = "on (POST /-/reload)" if options.lifecycle else "off (--web.enable-lifecycle)"
    settings = [*exporter.settings(), ("lifecycle API", lifecycle)]
    live = options.web_config
    if live is not None:
        current = live.web_config
        state = "last read applied" if live.successful else "last read refused, previous in force"
        users = len(current.users)
        summary = f"TLS {'on' if current.tls else 'off'}, {users} basic auth users; {state}"
        settings.append(("web config", f"{live.path}: {summary}"))
    return settings


def _web_config_status(exporter: Exporter, successful: bool) -> None:
    exporter.cache.web_config_successful = successful
    exporter.cache.mark_changed()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _closer(live: LiveWebConfig) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        live.close()

    return close


def _reload_soon(reload: Callable[[], Awaitable[object]]) -> None:
    task = asyncio.get_running_loop().create_task(reload(), name="reload")
    _RELOADS.add(task)
    task.add_done_callback(_RELOADS.discard)


_RELOADS: set[asyncio.Task[object]] = set()  # keeps SIGHUP reload tasks referenced until done


def _format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
