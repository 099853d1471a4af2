"""What one request did, and the one access-log line and metrics it leaves when it ends.

Both fronts fill a request's ``RequestInfo`` (dialect, endpoint, project, event counts) as they
learn them, and call ``finish`` once the answer has left: HTTP through its middleware
(``gateway.http.middleware``), gRPC around each call (``gateway.rpc.server``). A request id comes
from the client's ``X-Request-Id`` (gRPC: ``x-request-id`` metadata) when it is 1-128 printable
ASCII characters, else is made up, and is echoed back.

An access line (``--log-format json``; keys absent when they do not apply)::

    {"ts": "2026-01-02T03:04:05.678Z", "level": "info", "logger": "eventgw.access",
     "msg": "request", "request_id": "…", "transport": "http", "method": "POST",
     "path": "/batch", "dialect": "databuddy", "endpoint": "batch", "project": "…",
     "status": 200, "events": 3, "accepted": 2, "duplicates": 0, "rejected": 1,
     "replayed": false, "error": "…", "latency_ms": 1.234}

gRPC lines have ``"transport": "grpc"``, the method's full path, the numeric status and ``"code"``
(``"OK"``, ``"UNAUTHENTICATED"``...) and, under mutual TLS, the client certificate's subject
(``"client_subject": "CN=billing,O=Example"``). Never logged: headers, query strings, credentials,
bodies.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    client_subject: str = ""  # a gRPC client certificate's subject (mutual TLS)
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
        if self.client_subject:
            doc["client_subject"] = self.client_subject
        doc["latency_ms"] = round(seconds * 1000, 3)
        return doc


def finish(
    info: RequestInfo,
    observe: Callable[[RequestInfo, float], None] | None,
    *,
    log_line: bool = True,
) -> None:
    """Count (``observe``: the metrics' hook, when they are open) and log a finished request."""
    seconds = time.perf_counter() - info.started
    if observe is not None:
        observe(info, seconds)
    if not log_line:
        return
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("request", extra={"access": info.fields(seconds)})
