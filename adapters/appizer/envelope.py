"""Appizer's error envelope: ``{"error": <reason phrase>, "message", "code", "details"}`` with the
vendor's status codes and error codes (``MISSING_FIELD``, ``INVALID_TYPE``, ``MISSING_AUTH``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from adapters.allornothing import REQUIRED, WRONG_TYPE, InvalidEvent
from adapters.base import Response
from adapters.fields import json_response
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidCredential,
    InvalidRequest,
    MethodNotAllowed,
    MissingCredential,
    MissingScope,
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

# Appizer's "error" member is the HTTP reason phrase (fixed here, not taken from http.HTTPStatus,
# whose phrases change between Python versions).
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# The gateway's error family in Appizer's status codes and error codes.
ERRORS: dict[type[GatewayError], tuple[int, str]] = {
    InvalidRequest: (400, "INVALID_REQUEST"),
    PermanentError: (400, "INVALID_REQUEST"),
    MissingCredential: (401, "MISSING_AUTH"),
    AuthenticationError: (401, "INVALID_API_KEY"),
    UnknownProject: (401, "INVALID_API_KEY"),
    PermissionDenied: (403, "INSUFFICIENT_PERMISSIONS"),
    RouteNotFound: (404, "NOT_FOUND"),
    MethodNotAllowed: (405, "METHOD_NOT_ALLOWED"),
    IdempotencyInFlight: (409, "IDEMPOTENCY_IN_FLIGHT"),
    PayloadTooLarge: (413, "PAYLOAD_TOO_LARGE"),
    UnsupportedMediaType: (415, "UNSUPPORTED_MEDIA_TYPE"),
    IdempotencyKeyReused: (422, "IDEMPOTENCY_KEY_REUSE"),
    RateLimited: (429, "RATE_LIMIT_EXCEEDED"),
    RetryableError: (503, "SERVICE_UNAVAILABLE"),
    GatewayError: (500, "INTERNAL_ERROR"),
}


def validation_code(problem: str) -> str:
    """Appizer's 400 code for a field problem: absent, of the wrong type, or otherwise invalid."""
    if problem == REQUIRED:
        return "MISSING_FIELD"
    if problem in WRONG_TYPE:
        return "INVALID_TYPE"
    return "INVALID_REQUEST"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def render_error(error: GatewayError) -> Response:
    status, code = lookup(ERRORS, error)
    message = error.message
    details: dict[str, Any] = {"field": error.field} if error.field else {}
    if isinstance(error, ValidationFailed):
        # An invalid event or record: Appizer answers 400, MISSING_FIELD or INVALID_TYPE by field.
        status = 400
        code = validation_code(error.problem if isinstance(error, InvalidEvent) else "")
    elif isinstance(error, InvalidCredential) and "revoked" in message.lower():
        code = "REVOKED_API_KEY"
    elif isinstance(error, MissingScope):
        details["scope"] = error.scope
    elif isinstance(error, RateLimited):
        details = {
            "limit": error.limit,
            "window": _number(error.window),
            "retry_after": math.ceil(error.retry_after or 0),
        }
    elif isinstance(error, PayloadTooLarge):
        details["limit"] = error.limit
    elif status == 500:
        message = "Internal server error"  # never leak internals
    return _error(status, code, message, details, error_headers(error))


def _error(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": REASONS[status], "message": message, "code": code, "details": dict(details)}
    return json_response(status, body, headers)
