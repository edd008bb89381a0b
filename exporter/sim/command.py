"""`vastai-exporter simulate`: the simulated API alone, for a compose stack or a demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from ..listen import UsageError, parse_listen_address
from .api import start_simulator
from .model import Simulation

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit
        raise UsageError(message)


def _listen(value: str) -> tuple[str, int]:
    """HOST:PORT as --web.listen-address takes it (listen.parse_listen_address), host required."""
    try:
        address = parse_listen_address(value)
    except UsageError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}") from None
    if address.host is None:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return address.host, address.port


def _build_parser() -> _Parser:
    parser = _Parser(prog="vastai-exporter simulate", description="Serve a simulated Vast.ai API.")
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080),
                        help="HOST:PORT to serve on (default 127.0.0.1:8080)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    parser.add_argument("--no-flaky", action="store_true", help="disable the flaky worker group")
    return parser


async def _serve(host: str, port: int, sim: Simulation, api_key: str | None) -> None:
    runner, url = await start_simulator(host, port, sim=sim, api_key=api_key)
    log.info("simulated Vast.ai API listening on %s", url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_simulator(argv: list[str]) -> int:
    """Entry for `vastai-exporter simulate --listen HOST:PORT [--seed N] [--api-key KEY]`."""
    try:
        args = _build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"vastai-exporter simulate: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, port = args.listen
    sim = Simulation(seed=args.seed, flaky=not args.no_flaky)
    try:
        asyncio.run(_serve(host, port, sim, args.api_key))
    except OSError as exc:
        print(f"vastai-exporter simulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
