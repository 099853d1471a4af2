"""The Appizer dialect (seed 002): ``POST /v1/events`` and the all-or-nothing ``/v1/events/batch``.

An event is ``{event_name, user_id, properties?, ip?, ua?}`` with a Bearer key. Appizer's wire
format carries no timestamp and no event id: every event is stamped with the receive time and
given an id generated from the Idempotency-Key (or request id) and its index. A batch of at most
``max_batch_events`` is stored whole or rejected with 400 naming ``events[i].field``. Errors use
Appizer's envelope ``{"error": <reason phrase>, "message", "code", "details"}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.allornothing import (
    REQUIRED,
    WRONG_TYPE,
    InvalidEvent,
    bearer_key,
    body_object,
    describe,
    event_rows,
    extras,
    required_text,
    row_fields,
    translate_all,
)
from adapters.base import RawRequest, Response, Route, Translation
from adapters.fields import (
    ENVELOPE_EXTRAS,
    FieldError,
    Fields,
    batch_envelope,
    generated_id,
    json_response,
    parse_json,
    to_struct,
    to_timestamp,
)
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
from gateway.model import Result
from gateway.pb.event_pb2 import Event, EventType

MAX_NAME = 256
MAX_USER_ID = 256
MAX_IP = 64
MAX_USER_AGENT = 2048
MAX_PROPERTIES_BYTES = 32 * 1024

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


class Appizer:
    """Appizer's event API: one event per request, or an all-or-nothing batch."""

    name: str = "appizer"
    prefixes: Sequence[str] = ("/v1",)
    cors_allow_headers: Sequence[str] = ()

    def __init__(self, *, max_batch_events: int = 100) -> None:
        self.max_batch_events = max_batch_events
        self.routes: Sequence[Route] = (
            Route(path="/v1/events", name="single"),
            Route(path="/v1/events/batch", name="batch"),
        )

    def translate(self, request: RawRequest) -> Translation:
        credential = bearer_key(request.headers)
        if credential is None:
            # Appizer authenticates before it reads the body: without a key, a 401 and nothing else.
            return Translation()
        try:
            body = body_object(parse_json(request))
            if request.route.name == "single":
                events = [self._event(request, row_fields(body, ""), 0)]
            else:
                rows = self._rows(body)
                envelope = batch_envelope(body, ("events",))
                events = translate_all(rows, lambda f, i: self._event(request, f, i))
                for event in events if envelope else ():
                    event.extras[ENVELOPE_EXTRAS] = envelope
        except FieldError as exc:
            return Translation(credential=credential, failure=InvalidEvent(exc))
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        return Translation(credential=credential, items=events)

    def _rows(self, body: Mapping[str, Any]) -> list[Any]:
        try:
            rows = event_rows(body)
        except FieldError as exc:
            # Appizer: a missing, non-array or empty ``events`` is INVALID_REQUEST (no field code).
            raise InvalidRequest(describe(exc), field=exc.field) from exc
        if len(rows) > self.max_batch_events:
            raise InvalidRequest(
                f"Too many events: {len(rows)} (maximum {self.max_batch_events} per batch)",
                field="events",
            )
        return rows

    def _event(self, request: RawRequest, fields: Fields, index: int) -> Event:
        name = required_text(fields, "event_name", max_len=MAX_NAME)
        user_id = required_text(fields, "user_id", max_len=MAX_USER_ID)
        properties = fields.mapping("properties", max_bytes=MAX_PROPERTIES_BYTES)
        ip = fields.text("ip", max_len=MAX_IP)
        user_agent = fields.text("ua", max_len=MAX_USER_AGENT)
        # Appizer has no timestamp or event id on the wire; a client that sends ``timestamp`` or
        # ``event_id`` anyway keeps them in extras, uninterpreted.
        rest = extras(fields)
        received = to_timestamp(request.received_at)
        event = Event(
            id=generated_id(request, index),
            dialect=self.name,
            type=EventType.EVENT_TYPE_TRACK,
            name=name,
            occurred_at=received,
            received_at=received,
        )
        event.identity.user_id = user_id
        if properties is not None:
            event.properties.CopyFrom(to_struct(properties))
        if ip is not None:
            event.device.ip = ip
        if user_agent is not None:
            event.device.user_agent = user_agent
        if rest is not None:
            event.extras.CopyFrom(rest)
        return event

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        # All or nothing: a result has no rejected item (a request with one is refused whole).
        if request.route.name == "single":
            event_id = result[0].event_id if result else ""
            return json_response(
                200,
                {"success": True, "event_id": event_id, "message": "Event tracked successfully"},
            )
        return json_response(
            200,
            {
                "success": True,
                "processed_count": len(result),
                "message": "Batch events tracked successfully",
            },
        )

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        status, code = lookup(ERRORS, error)
        message = error.message
        details: dict[str, Any] = {"field": error.field} if error.field else {}
        if isinstance(error, ValidationFailed):
            # All-or-nothing batch: Appizer answers 400, MISSING_FIELD or INVALID_TYPE by field.
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
        return self._error(status, code, message, details, error_headers(error))

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        body = {
            "error": REASONS[status],
            "message": message,
            "code": code,
            "details": dict(details),
        }
        return json_response(status, body, headers)
