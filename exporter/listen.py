"""The command line's shared pieces: its usage error, and the listen address both the exporter
(`--web.listen-address`) and the simulator (`simulate --listen`) take.

Apart from `cli` so that the simulator's command can use them without importing the exporter's
CLI (which loads the simulator for `--demo`): no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass


class UsageError(Exception):
    """Bad command-line flags (exit 2)."""


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
