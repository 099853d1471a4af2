"""VibeFollow's answers: the error envelope ``{"errors": [{"code", "message", "field"?}]}`` with the
vendor's status codes, and the per-row answer of its bulk endpoints (``/events/bulk``,
``/users/bulk``): 200 ``{"data": {"accepted", "rejected", "errors": [...]}, "meta": {"received"}}``,
where ``accepted + rejected == meta.received``.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Response, Translation
from adapters.fields import json_response
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
    MalformedBody,
    MethodNotAllowed,
    MissingCredential,
    PayloadTooLarge,
    PermanentError,
    PermissionDenied,
    RateLimited,
    RetryableError,
    RouteNotFound,
    UnknownProject,
    UnsupportedMediaType,
    ValidationFailed,
    error_headers,
    lookup,
)
from gateway.model import Result, Status
from gateway.pb.event_pb2 import Event

# The gateway's error family in VibeFollow's status codes and error codes.
ERRORS: dict[type[GatewayError], tuple[int, str]] = {
    MalformedBody: (400, "invalid_json"),
    ValidationFailed: (422, "validation_failed"),
    InvalidRequest: (400, "invalid_request"),
    PermanentError: (400, "invalid_request"),
    MissingCredential: (401, "auth_required"),
    AuthenticationError: (401, "invalid_api_key"),
    UnknownProject: (401, "invalid_api_key"),
    PermissionDenied: (403, "forbidden"),
    RouteNotFound: (404, "not_found"),
    MethodNotAllowed: (405, "method_not_allowed"),
    IdempotencyInFlight: (409, "idempotency_in_flight"),
    PayloadTooLarge: (413, "payload_too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    IdempotencyKeyReused: (422, "idempotency_key_reuse"),
    RateLimited: (429, "rate_limited"),
    RetryableError: (503, "server_error"),
    GatewayError: (500, "server_error"),
}


def problem(code: str, message: str, field: str | None = None) -> dict[str, str]:
    """One entry of an ``errors`` array; ``field`` only when the problem has one."""
    item = {"code": code, "message": message}
    if field:
        item["field"] = field
    return item


def render_error(error: GatewayError) -> Response:
    status, code = lookup(ERRORS, error)
    message = error.message if status != 500 else "Internal server error"
    body = {"errors": [problem(code, message, error.field)]}
    return json_response(status, body, error_headers(error))


def render_bulk(translation: Translation, result: Result) -> Response:
    """Per-row results: a row rejected by the adapter or by the pipeline is an entry of
    ``data.errors`` at its index; a duplicate is acknowledged like a new row."""
    errors: list[dict[str, Any]] = []
    accepted = 0
    for position, item in enumerate(translation.items):
        if isinstance(item, Event):
            outcome = result[position]
            if outcome.status is not Status.REJECTED:
                accepted += 1
                continue
            index, code, message, field = position, outcome.code, outcome.message, outcome.field
        else:
            index, code, message, field = item.index, item.code, item.message, item.field
        entry = problem(code or "validation_failed", message or "Record rejected", field)
        errors.append({"index": index, **entry})
    data = {"accepted": accepted, "rejected": len(errors), "errors": errors}
    return json_response(200, {"data": data, "meta": {"received": len(translation.items)}})
