"""The VibeFollow dialect (seed 004): ``POST /api/v1/events``, ``.../batch`` and ``.../bulk``.

An event is ``{external_user_id, name, properties?, timestamp?}`` with a Bearer key (``sk_live_...``
by convention; the gateway accepts any key it issued). The single and batch endpoints answer 202
``{"data": {"accepted": true}}``; a batch of at most ``max_batch_events`` is all-or-nothing and an
invalid event rejects it with 422 naming ``events[i].field``. The bulk endpoint (up to
``max_bulk_events`` rows) validates row by row and reports per-row results. Errors use
VibeFollow's envelope ``{"errors": [{"code", "message", "field"?}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.allornothing import (
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
from adapters.base import RawRequest, Rejection, Response, Route, Translation
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
from gateway.pb.event_pb2 import Event, EventType

MAX_EXTERNAL_USER_ID = 256
MAX_NAME = 256
MAX_PROPERTY_KEYS = 100
MAX_PROPERTIES_BYTES = 1024 * 1024
MAX_BATCH_BODY_BYTES = 5_000_000  # "Max body size 5 MB"

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


def _error(code: str, message: str, field: str | None = None) -> dict[str, str]:
    item = {"code": code, "message": message}
    if field:
        item["field"] = field
    return item


class VibeFollow:
    """VibeFollow's event API: single, all-or-nothing batch, and per-row bulk."""

    name: str = "vibefollow"
    prefixes: Sequence[str] = ("/api/v1/events",)
    cors_allow_headers: Sequence[str] = ()

    def __init__(self, *, max_batch_events: int = 500, max_bulk_events: int = 1000) -> None:
        self.max_batch_events = max_batch_events
        self.max_bulk_events = max_bulk_events
        self.routes: Sequence[Route] = (
            Route(path="/api/v1/events", name="single"),
            Route(path="/api/v1/events/batch", name="batch", max_body_bytes=MAX_BATCH_BODY_BYTES),
            Route(path="/api/v1/events/bulk", name="bulk", per_item=True),
        )

    def translate(self, request: RawRequest) -> Translation:
        credential = bearer_key(request.headers)
        if credential is None:
            # VibeFollow authenticates before it reads the body: "Missing or malformed
            # Authorization header" is answered 401 whatever the body holds.
            return Translation()
        try:
            # "Requests must be JSON": parse_json accepts application/json, text/plain (the
            # gateway-wide sendBeacon rule) and an absent Content-Type; anything else is a 415.
            body = body_object(parse_json(request))
            items: list[Event | Rejection]
            if request.route.name == "single":
                items = [self._event(request, row_fields(body, ""), 0)]
            elif request.route.name == "bulk":
                rows = self._rows(body, self.max_bulk_events)
                envelope = batch_envelope(body, ("events",))
                items = self._each(request, rows)
            else:
                rows = self._rows(body, self.max_batch_events)
                envelope = batch_envelope(body, ("events",))
                items = list(translate_all(rows, lambda f, i: self._event(request, f, i)))
            if request.route.name != "single" and envelope:
                for item in items:
                    if isinstance(item, Event):
                        item.extras[ENVELOPE_EXTRAS] = envelope
        except FieldError as exc:
            return Translation(credential=credential, failure=InvalidEvent(exc))
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        return Translation(credential=credential, items=items)

    @staticmethod
    def _rows(body: Mapping[str, Any], limit: int) -> list[Any]:
        rows = event_rows(body)  # missing / not an array / empty: 422 naming "events"
        if len(rows) > limit:
            # VibeFollow answers an oversized batch 413, not 422: "split the batch on your side".
            raise PayloadTooLarge(
                f"Too many events: {len(rows)} (maximum {limit} per request)",
                limit=limit,
                field="events",
            )
        return rows

    def _each(self, request: RawRequest, rows: Sequence[Any]) -> list[Event | Rejection]:
        """Bulk: every row on its own; an invalid row is a ``Rejection``, the rest are stored."""
        items: list[Event | Rejection] = []
        for index, row in enumerate(rows):
            try:
                # The result carries the row's index, so the field is named within the row.
                items.append(self._event(request, row_fields(row, ""), index))
            except FieldError as exc:
                items.append(
                    Rejection(
                        index=index,
                        message=describe(exc),
                        code="validation_failed",
                        field=exc.field if exc.field != "event" else None,
                    )
                )
        return items

    def _event(self, request: RawRequest, fields: Fields, index: int) -> Event:
        external_user_id = required_text(fields, "external_user_id", max_len=MAX_EXTERNAL_USER_ID)
        name = required_text(fields, "name", max_len=MAX_NAME)
        properties = fields.mapping(
            "properties", max_keys=MAX_PROPERTY_KEYS, max_bytes=MAX_PROPERTIES_BYTES
        )
        # Documented as ISO-8601; Unix milliseconds are accepted too (lenient, as elsewhere).
        occurred = fields.iso_or_epoch_ms("timestamp")
        # An ``id`` / ``event_id`` the client sends stays in extras: the event id is always
        # generated, so that a retry under the same Idempotency-Key maps to the same ids.
        rest = extras(fields)
        received = to_timestamp(request.received_at)
        event = Event(
            id=generated_id(request, index),
            dialect=self.name,
            type=EventType.EVENT_TYPE_TRACK,
            name=name,
            occurred_at=received if occurred is None else to_timestamp(occurred),
            received_at=received,
        )
        event.identity.external_id = external_user_id
        if properties is not None:
            event.properties.CopyFrom(to_struct(properties))
        if rest is not None:
            event.extras.CopyFrom(rest)
        return event

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        if request.route.name == "bulk":
            return self._render_bulk(translation, result)
        # All or nothing: a result has no rejected item (a request with one is refused whole).
        return json_response(202, {"data": {"accepted": True}})

    @staticmethod
    def _render_bulk(translation: Translation, result: Result) -> Response:
        errors: list[dict[str, Any]] = []
        accepted = 0
        for position, item in enumerate(translation.items):
            if isinstance(item, Event):
                outcome = result[position]
                if outcome.status is not Status.REJECTED:
                    accepted += 1  # a duplicate is acknowledged like a new event
                    continue
                index, code, message, field = position, outcome.code, outcome.message, outcome.field
            else:
                index, code, message, field = item.index, item.code, item.message, item.field
            problem = _error(code or "validation_failed", message or "Event rejected", field)
            errors.append({"index": index, **problem})
        data = {"accepted": accepted, "rejected": len(errors), "errors": errors}
        return json_response(200, {"data": data, "meta": {"received": len(translation.items)}})

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        status, code = lookup(ERRORS, error)
        message = error.message if status != 500 else "Internal server error"
        body = {"errors": [_error(code, message, error.field)]}
        return json_response(status, body, error_headers(error))
