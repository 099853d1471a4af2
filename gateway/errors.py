"""The one exception family of the gateway, classified once and mapped to gRPC codes in one table.

::

    GatewayError                      (code, message, field, http_status)
    ├── PermanentError                the same request will fail again: fix it first
    │   ├── InvalidRequest            400 the request as a whole is malformed or invalid
    │   │   ├── MalformedBody         400 not JSON / not UTF-8 / wrong top-level shape
    │   │   └── ValidationFailed      422 an all-or-nothing batch has an invalid event (`field`)
    │   ├── UnsupportedMediaType      415
    │   ├── PayloadTooLarge           413 (`limit` names the limit that was exceeded)
    │   ├── AuthenticationError       401
    │   │   ├── MissingCredential
    │   │   └── InvalidCredential     unknown or revoked key
    │   ├── UnknownProject            404 a project id that names no active project
    │   ├── PermissionDenied          403
    │   │   ├── MissingScope          the key lacks the scope the endpoint needs
    │   │   ├── ProjectMismatch       the body names another project than the credential
    │   │   └── OriginNotAllowed      the browser Origin is not on the project's list
    │   ├── RouteNotFound             404
    │   ├── SubmissionNotFound        404 no completed submission under that idempotency key
    │   ├── MethodNotAllowed          405
    │   └── IdempotencyKeyReused      422 same key, different request
    └── RetryableError                try again later, unchanged (`retry_after` seconds, if known)
        ├── IdempotencyInFlight       409 the first request with this key is still running
        ├── RateLimited               429
        ├── Overloaded                503 the writer queue is full
        ├── StorageUnavailable        503 the database cannot be reached
        └── RequestTimeout            408 the body did not arrive in time

Adapters render this family in their vendor's envelope; the gRPC front maps it with
``GRPC_STATUS`` below. Handlers never invent status codes of their own: ``lookup`` is the one way
from an error's class to a table's entry (most specific class first), ``retry_after`` the one
wait a client is told (``error_headers`` for HTTP, ``RetryInfo`` for gRPC), and ``restore``
brings back an error stored with an idempotency key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar, TypeVar

T = TypeVar("T")


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PermanentError(GatewayError):
    http_status = 400


class InvalidRequest(PermanentError):
    code = "invalid_request"


class MalformedBody(InvalidRequest):
    code = "malformed_body"


class ValidationFailed(InvalidRequest):
    code = "validation_failed"
    http_status = 422


class UnsupportedMediaType(PermanentError):
    code = "unsupported_media_type"
    http_status = 415


class PayloadTooLarge(PermanentError):
    code = "payload_too_large"
    http_status = 413

    def __init__(self, message: str, *, limit: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.limit = limit


class AuthenticationError(PermanentError):
    code = "unauthenticated"
    http_status = 401


class MissingCredential(AuthenticationError):
    code = "missing_credential"


class InvalidCredential(AuthenticationError):
    code = "invalid_credential"


class UnknownProject(PermanentError):
    code = "unknown_project"
    http_status = 404


class PermissionDenied(PermanentError):
    code = "permission_denied"
    http_status = 403


class MissingScope(PermissionDenied):
    code = "missing_scope"

    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


class ProjectMismatch(PermissionDenied):
    code = "project_mismatch"


class OriginNotAllowed(PermissionDenied):
    code = "origin_not_allowed"


class RouteNotFound(PermanentError):
    code = "not_found"
    http_status = 404


class SubmissionNotFound(PermanentError):
    code = "submission_not_found"
    http_status = 404


class MethodNotAllowed(PermanentError):
    code = "method_not_allowed"
    http_status = 405

    def __init__(self, message: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class IdempotencyKeyReused(PermanentError):
    code = "idempotency_key_reuse"
    http_status = 422


class RetryableError(GatewayError):
    http_status = 503
    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class IdempotencyInFlight(RetryableError):
    code = "idempotency_in_flight"
    http_status = 409


class RateLimited(RetryableError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, limit: int, window: float, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limit = limit
        self.window = window


class Overloaded(RetryableError):
    code = "overloaded"


class StorageUnavailable(RetryableError):
    code = "storage_unavailable"


class RequestTimeout(RetryableError):
    """The request's body did not arrive in time (``http_body_timeout_seconds``)."""

    code = "request_timeout"
    http_status = 408


# The one table from error class to gRPC status code name (looked up along the MRO, most specific
# first). Names, not grpc.StatusCode values, so that this module stays free of grpc.
GRPC_STATUS: dict[type[GatewayError], str] = {
    InvalidRequest: "INVALID_ARGUMENT",
    UnsupportedMediaType: "INVALID_ARGUMENT",
    PayloadTooLarge: "RESOURCE_EXHAUSTED",
    AuthenticationError: "UNAUTHENTICATED",
    UnknownProject: "UNAUTHENTICATED",
    PermissionDenied: "PERMISSION_DENIED",
    RouteNotFound: "UNIMPLEMENTED",
    SubmissionNotFound: "NOT_FOUND",
    MethodNotAllowed: "UNIMPLEMENTED",
    IdempotencyKeyReused: "FAILED_PRECONDITION",
    IdempotencyInFlight: "ABORTED",
    RequestTimeout: "DEADLINE_EXCEEDED",
    RateLimited: "RESOURCE_EXHAUSTED",
    Overloaded: "UNAVAILABLE",
    StorageUnavailable: "UNAVAILABLE",
    GatewayError: "INTERNAL",
}


def lookup(table: Mapping[type[GatewayError], T], error: GatewayError) -> T:
    """The entry of ``table`` for ``error``'s class, most specific first along its MRO; the
    table must hold ``GatewayError`` itself as the fallback."""
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return table[GatewayError]


def grpc_status_name(error: GatewayError) -> str:
    """The gRPC status code name for ``error``."""
    return lookup(GRPC_STATUS, error)


# A 503 that does not know when capacity returns still tells clients to back off this long.
DEFAULT_RETRY_AFTER = 1.0


def retry_after(error: GatewayError) -> float | None:
    """Seconds a client should wait before retrying ``error`` (gRPC's ``RetryInfo``); None for
    an error not worth retrying."""
    if not isinstance(error, RetryableError):
        return None
    if error.retry_after is None and error.http_status == 503:
        return DEFAULT_RETRY_AFTER
    return error.retry_after


def error_headers(error: GatewayError) -> dict[str, str]:
    """The HTTP headers every dialect sends with ``error``: ``Retry-After`` in whole seconds,
    rounded up, for a retryable one; ``Allow`` for a 405."""
    headers: dict[str, str] = {}
    if (seconds := retry_after(error)) is not None:
        headers["Retry-After"] = str(max(0, math.ceil(seconds)))
    if isinstance(error, MethodNotAllowed) and error.allowed:
        headers["Allow"] = ", ".join(error.allowed)
    return headers


def _classes(root: type[GatewayError]) -> list[type[GatewayError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_classes(sub))
    return found


# This module's classes by code (an adapter's subclass shares its parent's code).
_BY_CODE: dict[str, type[GatewayError]] = {}
for _cls in _classes(GatewayError):
    _BY_CODE.setdefault(_cls.code, _cls)


def restore(
    code: str, message: str, field: str | None = None, limit: int | None = None
) -> GatewayError:
    """An error as ``Result.encode`` stored it: its class by ``code`` (``GatewayError`` for an
    unknown one), message and field; attributes a class adds take neutral values."""
    cls = _BY_CODE.get(code, GatewayError)
    error = cls.__new__(cls)
    GatewayError.__init__(error, message, field=field)
    if isinstance(error, RetryableError):
        error.retry_after = None
    if isinstance(error, PayloadTooLarge):
        error.limit = limit or 0
    if isinstance(error, MissingScope):
        error.scope = ""
    if isinstance(error, MethodNotAllowed):
        error.allowed = ()
    return error
