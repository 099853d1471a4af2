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
    │   ├── MethodNotAllowed          405
    │   └── IdempotencyKeyReused      422 same key, different request
    └── RetryableError                try again later, unchanged (`retry_after` seconds, if known)
        ├── IdempotencyInFlight       409 the first request with this key is still running
        ├── RateLimited               429
        ├── Overloaded                503 the writer queue is full
        └── StorageUnavailable        503 the database cannot be reached

Adapters render this family in their vendor's envelope; the gRPC front maps it with
``GRPC_STATUS`` below. Handlers never invent status codes of their own.
"""

from __future__ import annotations

from typing import ClassVar


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
    MethodNotAllowed: "UNIMPLEMENTED",
    IdempotencyKeyReused: "FAILED_PRECONDITION",
    IdempotencyInFlight: "ABORTED",
    RateLimited: "RESOURCE_EXHAUSTED",
    Overloaded: "UNAVAILABLE",
    StorageUnavailable: "UNAVAILABLE",
    GatewayError: "INTERNAL",
}


def grpc_status_name(error: GatewayError) -> str:
    """The gRPC status code name for ``error``."""
    for cls in type(error).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return "INTERNAL"
