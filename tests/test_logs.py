"""Log formats and the redaction filter, the second line of defence for the key."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exporter.logs import JsonFormatter, LogfmtFormatter, RedactingFilter

SECRET = "vk-secret-0123456789abcdef"


def emit(formatter: logging.Formatter, emit_record) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    redactor = RedactingFilter()
    redactor.add_secret(SECRET)
    handler.addFilter(redactor)
    logger = logging.getLogger(f"test.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    emit_record(logger)
    return stream.getvalue()


def leaky(logger: logging.Logger) -> None:
    logger.warning("key %s in args", SECRET, extra={"fields": {"error": f"bad {SECRET}"}})
    try:
        raise ValueError(f"exception text with {SECRET}")
    except ValueError:
        logger.exception("failed with " + SECRET)


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()])
def test_the_key_is_redacted_from_message_args_fields_and_exceptions(formatter) -> None:
    output = emit(formatter, leaky)
    assert SECRET not in output
    assert output.count("<redacted>") == 4
    assert "ValueError" in output


def test_json_lines_have_time_level_message_and_fields() -> None:
    output = emit(JsonFormatter(), lambda log: log.info("hello", extra={"fields": {"id": 3}}))
    record = json.loads(output)
    assert record["message"] == "hello" and record["level"] == "info" and record["id"] == 3
    assert record["time"].endswith("Z")


def test_logfmt_quotes_spaces_and_escapes_control_characters() -> None:
    fields = {"plain": "abc", "spaced": "a b", "escape": "\x1b[31mred", "num": 5}
    output = emit(LogfmtFormatter(), lambda log: log.info("x", extra={"fields": fields}))
    assert "plain=abc " in output and 'spaced="a b"' in output and "num=5" in output
    assert "\x1b" not in output and 'escape="\\u001b[31mred"' in output
