"""Logging to stderr as logfmt or JSON lines, with the API key redacted from every record.

Code passes structured fields with `extra={"fields": {...}}`. The redaction filter sits on the
handler, so it also covers records from libraries (aiohttp) and exception texts: a second line
of defence behind the client, which never puts the key in a message in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

REDACTED = "<redacted>"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class RedactingFilter(logging.Filter):
    """Replaces every secret in a record's message, fields and exception text."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def add_secret(self, secret: str) -> None:
        if secret and secret not in self.secrets:
            self.secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {key: self._value(value) for key, value in fields.items()}
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def _value(self, value: Any) -> Any:
        return self.redact(value) if isinstance(value, str) else value


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    if record.exc_text:
        fields["exc"] = record.exc_text
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=... msg="..." key=value ...` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_record_fields(record),
        }
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_record_fields(record),
        }
        return json.dumps(line, default=str)


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and text.isprintable() and not any(char in text for char in ' "=\\'):
        return text
    return json.dumps(text)  # quoted, with control characters (terminal escapes) escaped


def setup_logging(level: str, fmt: str) -> RedactingFilter:
    """Route every logger to stderr in the chosen format; return the filter to add secrets to."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    redactor = RedactingFilter()
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return redactor
