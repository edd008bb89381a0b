"""`--web.config.file`: TLS and basic auth in the exporter-toolkit format of the Go exporters.

The same file works with `promtool check web-config`. bcrypt is slow by design, so a successful
check is remembered (as a salted SHA-256 of user and password, never the password itself) and a
scrape with the same credentials does not pay for bcrypt again.

The file is live, as exporter-toolkit's is: `LiveWebConfig` looks at it and at the files it
names (certificate, key, client CA) once a second, by inode, size and modification time, and
re-reads them in a worker thread when one changed. A new TLS connection then gets the new
certificate, client CAs and settings (the listening context hands each handshake the current
context from its SNI callback), the next request the new users and headers. An invalid file is
logged and the last good one stays in force.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
from aiohttp import web

from .config import ConfigError, check_mapping, load_yaml_file

log = logging.getLogger(__name__)

# Go's tls.ClientAuthType names -> what Python's ssl module can do faithfully.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Accepted by exporter-toolkit, but Python cannot ask for a certificate without verifying it.
UNSUPPORTED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert"}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
}
# Accepted for compatibility with exporter-toolkit files, and ignored (logged at start-up):
# Go's cipher-suite and curve names do not map onto OpenSSL's.
IGNORED_TLS_KEYS = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites"}
# The response headers exporter-toolkit lets a web config set.
ALLOWED_HEADERS = {
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "x-xss-protection",
    "content-security-policy",
}
WATCH_INTERVAL = 1.0  # seconds between two looks at the web config and the files it names
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; a longer password can never match
MAX_WAITING_CHECKS = 16  # bcrypt checks queued at most; past that, 401 without checking
REALM = 'Basic realm="vastai-exporter", charset="UTF-8"'
AUTH_CACHE_SIZE = 256


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str | None = None


@dataclass(frozen=True)
class WebConfig:
    tls: TLSSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)


def load_web_config(path: str) -> WebConfig:
    """Read and check a web config file, including that its TLS files load."""
    reading = read_web_config(path)
    if reading.web_config is None:
        raise reading.error or ConfigError("cannot be read", file=path)
    return reading.web_config


def _parse(document: Any, base: Path) -> WebConfig:
    top = check_mapping(
        document, "", {"tls_server_config", "basic_auth_users", "http_server_config"}
    )
    tls = _parse_tls(top.get("tls_server_config"), base)
    users = check_mapping(top.get("basic_auth_users"), "basic_auth_users", None)
    hashes: dict[str, bytes] = {}
    for user, hashed in users.items():
        hashes[str(user)] = _bcrypt_hash(hashed, f"basic_auth_users.{user}")
    http = check_mapping(top.get("http_server_config"), "http_server_config", {"headers", "http2"})
    headers = check_mapping(http.get("headers"), "http_server_config.headers", None)
    for name in headers:
        if str(name).lower() not in ALLOWED_HEADERS:
            allowed = ", ".join(sorted(ALLOWED_HEADERS))
            raise ConfigError(
                f"this header cannot be configured (allowed: {allowed})",
                key=f"http_server_config.headers.{name}",
            )
    return WebConfig(tls, hashes, {str(k): str(v) for k, v in headers.items()})


def _bcrypt_hash(value: Any, key: str) -> bytes:
    """A well-formed bcrypt hash, checked now rather than failing every request later."""
    if not isinstance(value, str) or not value.startswith(("$2a$", "$2b$", "$2y$")):
        raise ConfigError("expected a bcrypt hash ($2a$, $2b$ or $2y$)", key=key)
    try:
        bcrypt.checkpw(b"", value.encode())
    except ValueError:
        raise ConfigError("not a valid bcrypt hash", key=key) from None
    return value.encode()


def _parse_tls(value: Any, base: Path) -> TLSSettings | None:
    section = check_mapping(value, "tls_server_config", TLS_KEYS | IGNORED_TLS_KEYS)
    if not section:
        return None
    ignored = sorted(IGNORED_TLS_KEYS & set(section))
    if ignored:
        log.warning(
            "web config: TLS settings accepted for compatibility but not applied",
            extra={"fields": {"keys": ",".join(ignored)}},
        )
    for required in ("cert_file", "key_file"):
        if not isinstance(section.get(required), str):
            raise ConfigError("required with TLS: a file path", key=f"tls_server_config.{required}")
    auth = section.get("client_auth_type", "NoClientCert")
    if auth in UNSUPPORTED_CLIENT_AUTH:
        raise ConfigError(
            f"{auth} is not supported here (Python verifies every client certificate it asks "
            "for): use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
            key="tls_server_config.client_auth_type",
        )
    if auth not in CLIENT_AUTH:
        raise ConfigError(
            f"unknown client_auth_type {auth!r}", key="tls_server_config.client_auth_type"
        )
    ca_file = section.get("client_ca_file")
    if ca_file and "client_auth_type" not in section:
        raise ConfigError(
            "client_ca_file without client_auth_type would not check clients: set "
            "client_auth_type (RequireAndVerifyClientCert or VerifyClientCertIfGiven)",
            key="tls_server_config.client_auth_type",
        )
    if auth != "NoClientCert" and not ca_file:
        raise ConfigError(f"{auth} needs a client_ca_file", key="tls_server_config.client_ca_file")
    for name in ("min_version", "max_version"):
        if name in section and section[name] not in TLS_VERSIONS:
            raise ConfigError(
                f"expected one of {', '.join(TLS_VERSIONS)}", key=f"tls_server_config.{name}"
            )

    def resolve(file: str | None) -> str | None:
        return None if file is None else str(base / file)

    return TLSSettings(
        cert_file=resolve(section["cert_file"]) or "",
        key_file=resolve(section["key_file"]) or "",
        client_auth_type=auth,
        client_ca_file=resolve(ca_file),
        min_version=section.get("min_version", "TLS12"),
        max_version=section.get("max_version"),
    )


def build_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """A server context: our certificate, the minimum version, client verification if asked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.max_version:
        context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load certificate or key: {exc}", key="tls_server_config.cert_file"
        ) from None
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load client CA: {exc}", key="tls_server_config.client_ca_file"
            ) from None
    return context


class BasicAuth:
    """aiohttp middleware: every path needs valid credentials when users are configured.

    Checks run on a bcrypt-only thread pool, at most MAX_WAITING_CHECKS queued: a flood of
    wrong passwords gets 401s, not a backlog that would delay rendering. Outcomes are cached
    by a salted digest of user, password and hash (never the password itself), failures too.
    """

    def __init__(self, users: dict[str, bytes], dummy_hash: bytes | None = None) -> None:
        self._users = users
        self._salt = os.urandom(16)
        self._outcomes: OrderedDict[bytes, bool] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")
        self._waiting = 0
        self._dummy_hash = dummy_hash_for(users) if dummy_hash is None else dummy_hash

    def update(self, users: dict[str, bytes], dummy_hash: bytes) -> None:
        """New users from a changed web config, for the next request; `dummy_hash` from
        `dummy_hash_for(users)`, computed off the event loop."""
        self._users, self._dummy_hash = users, dummy_hash
        self._outcomes.clear()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self._users:  # a web config without users, for now
            return await handler(request)
        credentials = _credentials(request.headers.get("Authorization", ""))
        if credentials is None or not await self.check(*credentials):
            return web.Response(
                status=401, text="Unauthorized\n", headers={"WWW-Authenticate": REALM}
            )
        return await handler(request)

    async def check(self, user: str, password: str) -> bool:
        secret = password.encode()
        if len(secret) > MAX_PASSWORD_BYTES or not self._users:
            return False
        hashed = self._users.get(user, self._dummy_hash)
        digest = self._digest(user.encode(), secret, hashed)
        if digest in self._outcomes:
            self._outcomes.move_to_end(digest)
            return self._outcomes[digest]
        if self._waiting >= MAX_WAITING_CHECKS:
            return False
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            valid = await loop.run_in_executor(self._pool, bcrypt.checkpw, secret, hashed)
        finally:
            self._waiting -= 1
        valid = valid and user in self._users
        self._outcomes[digest] = valid
        while len(self._outcomes) > AUTH_CACHE_SIZE:
            self._outcomes.popitem(last=False)
        return valid

    def _digest(self, *parts: bytes) -> bytes:
        mac = hmac.new(self._salt, digestmod=hashlib.sha256)
        for part in parts:  # length-prefixed, so ("a", "b:c") and ("a:b", "c") differ
            mac.update(len(part).to_bytes(4, "big") + part)
        return mac.digest()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def dummy_hash_for(users: dict[str, bytes]) -> bytes:
    """What unknown users are checked against: at the highest configured cost, so they take as
    long as known ones and do not reveal which user names exist. Slow: bcrypt."""
    if not users:
        return b""
    cost = max(int(hashed.split(b"$")[2]) for hashed in users.values())
    return bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=cost))


Stamp = tuple[int, int, int] | None  # inode, size, mtime in ns; None: missing


def _stamp(path: str) -> Stamp:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _named_files(document: Any, base: Path) -> list[str]:
    """The files a web config document names (certificate, key, client CA), to watch."""
    tls = document.get("tls_server_config") if isinstance(document, dict) else None
    if not isinstance(tls, dict):
        return []
    names = (tls.get(key) for key in ("cert_file", "key_file", "client_ca_file"))
    return [str(base / name) for name in names if isinstance(name, str)]


@dataclass(frozen=True)
class Reading:
    """One read of a web config and its files: what it holds, or why it is refused, and what
    the files looked like before they were read (so a change during the read is seen next)."""

    watched: tuple[str, ...]
    stamps: tuple[Stamp, ...]
    web_config: WebConfig | None = None
    context: ssl.SSLContext | None = None
    dummy_hash: bytes = b""
    error: ConfigError | None = None


def read_web_config(path: str) -> Reading:
    """Read, check and build everything a web config needs; slow (bcrypt), for a thread."""
    base = Path(path).parent
    stamp = _stamp(path)
    try:
        document = load_yaml_file(path) or {}
    except ConfigError as exc:
        return Reading((path,), (stamp,), error=exc)
    named = _named_files(document, base)
    watched, stamps = (path, *named), (stamp, *(_stamp(name) for name in named))
    try:
        web_config = _parse(document, base)
        context = build_ssl_context(web_config.tls) if web_config.tls is not None else None
    except ConfigError as exc:
        return Reading(watched, stamps, error=ConfigError(exc.detail, file=path, key=exc.key))
    return Reading(watched, stamps, web_config, context, dummy_hash_for(web_config.users))


class LiveWebConfig:
    """The `--web.config.file` in force, re-read when it or a file it names changes.

    `context` is the listening socket's TLS context for the whole run: its SNI callback, which
    OpenSSL calls on every handshake (with or without SNI), switches the connection to the
    context of the last good file, whose certificate and client CAs then apply. The client
    verification mode and TLS versions are set on the listening context itself, because a
    connection takes those from the context it was created with. `auth` and `headers` are read
    per request.
    """

    def __init__(self, path: str, interval: float = WATCH_INTERVAL) -> None:
        reading = read_web_config(path)
        if reading.web_config is None:
            raise reading.error or ConfigError("cannot be read", file=path)
        self.path = path
        self.interval = interval
        self.web_config = reading.web_config
        self.successful = True
        self.on_status: Callable[[bool], None] = lambda successful: None
        self.auth = BasicAuth(reading.web_config.users, reading.dummy_hash)
        self.context = reading.context
        self._current = reading.context
        if self.context is not None:
            self.context.sni_callback = self._choose_context
        self._watched, self._stamps = reading.watched, reading.stamps
        self._lock = asyncio.Lock()

    @property
    def headers(self) -> dict[str, str]:
        return self.web_config.headers

    def changed(self) -> bool:
        """Whether the file or one it names looks different from when it was last read."""
        return tuple(_stamp(path) for path in self._watched) != self._stamps

    async def run(self) -> None:
        """Look for changes every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # keep watching: the next change may read cleanly
                log.exception("web config: checking for changes failed")

    async def check(self) -> None:
        """Re-read the files if one changed, and apply them if they are valid."""
        async with self._lock:
            if not self.changed():
                return
            loop = asyncio.get_running_loop()
            reading = await loop.run_in_executor(None, read_web_config, self.path)
            self._apply(reading)

    def _apply(self, reading: Reading) -> None:
        self._watched, self._stamps = reading.watched, reading.stamps
        new, error = reading.web_config, reading.error
        if new is not None and (new.tls is None) != (self.context is None):
            error = ConfigError("turning TLS on or off needs a restart", file=self.path)
        if error is not None or new is None:
            log.error(
                "web config reload failed; keeping the last good one",
                extra={"fields": {"error": str(error)}},
            )
            self._set_status(False)
            return
        if self.context is not None and new.tls is not None:
            self.context.verify_mode = CLIENT_AUTH[new.tls.client_auth_type]
            self.context.minimum_version = TLS_VERSIONS[new.tls.min_version]
            maximum = new.tls.max_version
            self.context.maximum_version = (
                TLS_VERSIONS[maximum] if maximum else ssl.TLSVersion.MAXIMUM_SUPPORTED
            )
            self._current = reading.context
        self.auth.update(new.users, reading.dummy_hash)
        self.web_config = new
        fields = {"tls": new.tls is not None, "users": len(new.users)}
        log.info("web config reloaded", extra={"fields": fields})
        self._set_status(True)

    def _set_status(self, successful: bool) -> None:
        self.successful = successful
        self.on_status(successful)

    def _choose_context(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        if self._current is not None and self._current is not connection.context:
            connection.context = self._current

    def close(self) -> None:
        self.auth.close()


def _credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
