"""Logging: JSON (or text) lines, and one access line per request with its request id.

Every HTTP request passes through ``access_middleware``: it takes the client's ``X-Request-Id``
when it is 1-128 printable ASCII characters (else makes one up), echoes it in the response's
``X-Request-Id`` header, and when the response leaves records the request's metrics and logs one
line on the ``eventgw.access`` logger. The handlers fill the request's ``RequestInfo`` (dialect,
endpoint, project, event counts) as they learn them. gRPC calls do the same through ``call``
(request id from ``x-request-id`` metadata, echoed in the initial metadata).

An access line (``--log-format json``; keys absent when they do not apply)::

    {"ts": "2026-01-02T03:04:05.678Z", "level": "info", "logger": "eventgw.access",
     "msg": "request", "request_id": "…", "transport": "http", "method": "POST",
     "path": "/batch", "dialect": "databuddy", "endpoint": "batch", "project": "…",
     "status": 200, "events": 3, "accepted": 2, "duplicates": 0, "rejected": 1,
     "replayed": false, "error": "…", "latency_ms": 1.234}

gRPC lines have ``"transport": "grpc"``, the method's full path, the numeric status and ``"code"``
(``"OK"``, ``"UNAUTHENTICATED"``...). Never logged: headers, query strings, credentials, bodies.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.runtime import RUNTIME, Runtime

log = logging.getLogger(__name__)
access_log = logging.getLogger("eventgw.access")

REQUEST_ID_HEADER = "X-Request-Id"
GRPC_REQUEST_ID = "x-request-id"
_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,128}")


def request_id(candidate: str | None) -> str:
    """``candidate`` when it is 1-128 printable ASCII characters, else a fresh id."""
    if candidate and _REQUEST_ID.fullmatch(candidate) and candidate.strip():
        return candidate
    # 128 random bits as 32 hex digits: unique, not secret (uuid4 costs a syscall per request).
    return f"{random.getrandbits(128):032x}"


@dataclass(slots=True, kw_only=True)
class RequestInfo:
    """What one request did, filled in as the handler learns it; logged and counted at the end."""

    request_id: str
    transport: str  # "http" or "grpc"
    method: str
    path: str
    dialect: str = ""
    endpoint: str = ""
    project: str = ""
    status: int = 0  # HTTP status, or the gRPC status code's number
    code: str = ""  # the gRPC status name
    events: int | None = None  # items in the request, when it was read
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    replays: int = 0
    rate_limited: bool = False
    error: str = ""  # the GatewayError code, when the request failed
    started: float = field(default_factory=time.perf_counter)

    @property
    def status_label(self) -> str:
        return self.code or str(self.status)

    def fields(self, seconds: float) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "request_id": self.request_id,
            "transport": self.transport,
            "method": self.method,
            "path": self.path,
            "dialect": self.dialect or "none",
            "endpoint": self.endpoint or "unmatched",
            "status": self.status,
        }
        if self.code:
            doc["code"] = self.code
        if self.project:
            doc["project"] = self.project
        if self.events is not None:
            doc["events"] = self.events
            doc["accepted"] = self.accepted
            doc["duplicates"] = self.duplicates
            doc["rejected"] = self.rejected
            doc["replayed"] = self.replays > 0
        if self.error:
            doc["error"] = self.error
        doc["latency_ms"] = round(seconds * 1000, 3)
        return doc


def finish(info: RequestInfo, runtime: Runtime | None) -> None:
    """Count and log a finished request (``runtime``: the ``Runtime``, if it is open)."""
    seconds = time.perf_counter() - info.started
    if runtime is not None:
        runtime.metrics.observe_request(info, seconds)
        if not runtime.settings.access_log:
            return
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("request", extra={"access": info.fields(seconds)})


# --- HTTP --------------------------------------------------------------------------------------

REQUEST_INFO = web.RequestKey("request_info", RequestInfo)


def request_info(request: web.Request) -> RequestInfo:
    """The request's ``RequestInfo`` (a detached one when no middleware made it)."""
    info = request.get(REQUEST_INFO)
    if info is None:
        info = RequestInfo(
            request_id=request_id(None), transport="http", method=request.method, path=request.path
        )
        request[REQUEST_INFO] = info
    return info


@web.middleware
async def access_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    info = RequestInfo(
        request_id=request_id(request.headers.get(REQUEST_ID_HEADER)),
        transport="http",
        method=request.method,
        path=request.path,
    )
    request[REQUEST_INFO] = info
    runtime = request.app.get(RUNTIME)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = info.request_id
        info.status = exc.status
        finish(info, runtime)
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        body = {"error": {"code": "error", "message": "Internal server error"}}
        response = web.json_response(body, status=500)
    response.headers[REQUEST_ID_HEADER] = info.request_id
    info.status = response.status
    finish(info, runtime)
    return response


# --- gRPC --------------------------------------------------------------------------------------

# The call being served (grpc.aio runs each call in its own task, with its own context).
current_call: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "eventgw_call", default=None
)


@contextlib.asynccontextmanager
async def call(
    context: grpc.aio.ServicerContext[Any, Any], method: str, path: str, runtime: Runtime
) -> AsyncIterator[RequestInfo]:
    """Serve one gRPC call as ``RequestInfo``: request id in and out, one line and the metrics
    at the end, whatever the outcome (the status ``context.abort`` set, else OK)."""
    metadata = dict(context.invocation_metadata() or ())
    info = RequestInfo(
        request_id=request_id(str(metadata.get(GRPC_REQUEST_ID) or "") or None),
        transport="grpc",
        method=method,
        path=path,
        dialect="grpc",
        endpoint=method,
    )
    token = current_call.set(info)
    try:
        await context.send_initial_metadata(((GRPC_REQUEST_ID, info.request_id),))
        yield info
        info.code = "OK"
    except BaseException:
        aborted = context.code()
        if isinstance(aborted, grpc.StatusCode):
            info.code = aborted.name
        else:
            info.code = "CANCELLED" if context.cancelled() else "UNKNOWN"
        raise
    finally:
        with contextlib.suppress(ValueError):  # a stream closed from another context
            current_call.reset(token)
        info.status = grpc.StatusCode[info.code].value[0]
        finish(info, runtime)


# --- formatting --------------------------------------------------------------------------------

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
