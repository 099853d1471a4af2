"""Segment's answers: ``{"success": true}`` with 200, and ``{"success": false, "code",
"message"}`` for a refused request.

The spec answers 200 to every request but an oversize one or one whose body is not JSON (400),
dropping unusable messages later. The gateway answers the same statuses; a message it could not
use is stored among the failed events and the 200 names it (``rejected``, with ``accepted``), so
it is never lost silently. A request the gateway refuses for its own reasons (an unknown write
key, a rate limit, an outage) gets the status the libraries treat as such: 401, 403, 429 (with
``Retry-After``, which the libraries honour) and 5xx (which they retry).
"""

from __future__ import annotations

from typing import Any

from adapters.base import Response
from adapters.fields import json_response
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    PermanentError,
    PermissionDenied,
    RateLimited,
    RetryableError,
    RouteNotFound,
    UnknownProject,
    UnsupportedMediaType,
    error_headers,
    lookup,
)
from gateway.model import Result, Status

ERRORS: dict[type[GatewayError], tuple[int, str]] = {
    InvalidRequest: (400, "invalid_request"),
    PermanentError: (400, "invalid_request"),
    PayloadTooLarge: (400, "payload_too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    AuthenticationError: (401, "unauthorized"),
    UnknownProject: (401, "unauthorized"),
    PermissionDenied: (403, "forbidden"),
    RouteNotFound: (404, "not_found"),
    MethodNotAllowed: (405, "method_not_allowed"),
    IdempotencyInFlight: (409, "conflict"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    RateLimited: (429, "rate_limited"),
    RetryableError: (503, "service_unavailable"),
    GatewayError: (500, "internal_error"),
}


def render_result(result: Result) -> Response:
    """200 ``{"success": true}``; with the rejected messages named when there are any."""
    body: dict[str, Any] = {"success": True}
    rejected = [
        {
            "index": i,
            "messageId": outcome.event_id or None,
            "field": outcome.field,
            "message": outcome.message,
        }
        for i, outcome in enumerate(result)
        if outcome.status is Status.REJECTED
    ]
    if rejected:
        body["accepted"] = result.accepted + result.duplicate_count
        body["rejected"] = rejected
    return json_response(200, body)


def error_response(error: GatewayError) -> Response:
    status, code = lookup(ERRORS, error)
    message = "Internal server error" if status == 500 else error.message
    body: dict[str, Any] = {"success": False, "code": code, "message": message}
    if error.field:
        body["field"] = error.field
    return json_response(status, body, error_headers(error))
