"""The container's HEALTHCHECK: `python -m exporter.healthcheck`, 0 when /-/healthy answers 200.

It probes the address the running exporter listens on, read from the exporter's own command line
in /proc (so `--web.listen-address 127.0.0.1:9100` needs no change to the check), and falls back
to the default `:9840`. `VASTAI_EXPORTER_HEALTHCHECK_URL` overrides the URL. Plain HTTP without
credentials: with TLS or basic auth on (`--web.config.file`), use the orchestrator's probes instead.
Standard library only, no curl or wget needed in the image.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

DEFAULT_LISTEN = ":9840"
FLAG = "--web.listen-address"


def listen_address(argv: list[str]) -> str | None:
    """The value of --web.listen-address in an argv (either `--flag VALUE` or `--flag=VALUE`)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == FLAG and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(FLAG + "="):
            found = arg.split("=", 1)[1]
    return found


def is_exporter(argv: list[str]) -> bool:
    if argv[:1] and argv[0].endswith("vastai-exporter"):
        return argv[1:2] != ["simulate"]
    # python .../vastai-exporter ARGS, or python -m exporter ARGS
    if len(argv) >= 2 and argv[1].endswith("vastai-exporter"):
        return argv[2:3] != ["simulate"]
    return argv[1:3] == ["-m", "exporter"] and argv[3:4] != ["simulate"]


def exporter_argv(proc: Path = Path("/proc")) -> list[str] | None:
    """The command line of the exporter process, PID 1 first (the image's ENTRYPOINT)."""
    try:
        pids = sorted((p for p in proc.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    except OSError:
        return None
    for pid in pids:
        try:
            raw = (pid / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if is_exporter(argv):
            return argv
    return None


def health_url(address: str) -> str:
    """http://HOST:PORT/-/healthy for a listen address; every-interface binds probe loopback."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/-/healthy"


def main() -> int:
    url = os.environ.get("VASTAI_EXPORTER_HEALTHCHECK_URL")
    if not url:
        argv = exporter_argv() or []
        url = health_url(listen_address(argv) or DEFAULT_LISTEN)
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:
        print(f"healthcheck {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
