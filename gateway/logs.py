"""Logging: JSON (or text) lines on stderr, and the redaction of what must never be logged.

``configure`` sends every record at the chosen level to one handler in the chosen format. The
access lines themselves are ``gateway.access``'s; here they are only formatted. Never logged:
headers, query strings, credentials, bodies (aiohttp's parser errors quote request bytes: they
are cut by ``RedactParserErrors``).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from aiohttp.http_exceptions import HttpProcessingError

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "access"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            doc.update(access)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """Readable lines; an access line lists its fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line += " " + " ".join(f"{k}={v}" for k, v in access.items())
        return line


class RedactParserErrors(logging.Filter):
    """aiohttp logs a malformed request (an oversize header line, a bad chunk) with an exception
    whose text quotes the offending bytes, which may be a credential. Keep the event, drop the
    quote: the record keeps its message and the exception's type only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            kind = type(record.exc_info[1]).__name__
            record.msg, record.args = f"{record.getMessage()}: malformed HTTP request ({kind})", ()
            record.exc_info, record.exc_text = None, None
        return True


_REDACT = RedactParserErrors()


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``fmt``."""
    parser_log = logging.getLogger("aiohttp.server")
    if _REDACT not in parser_log.filters:
        parser_log.addFilter(_REDACT)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:  # configured again
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


_HANDLER = "eventgw"
