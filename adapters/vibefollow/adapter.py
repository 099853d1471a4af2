"""The VibeFollow adapter: its routes, and each route's way through a request.

Every route takes a Bearer key (``sk_live_...`` by convention; the gateway accepts any key it
issued) and JSON. A single-record route (``/events``, ``/users``) translates one object and
answers 202 ``{"data": {"accepted": true}}``; the all-or-nothing ``/events/batch`` rejects the
request with 422 naming ``events[i].field`` at its first invalid event; a bulk route
(``/events/bulk``, ``/users/bulk``) validates record by record and answers per record
(``envelope.render_bulk``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import adapters.vibefollow.envelope as envelope
import adapters.vibefollow.events as events
import adapters.vibefollow.users as users
from adapters.allornothing import (
    InvalidEvent,
    bearer_key,
    body_object,
    describe,
    row_fields,
    translate_all,
)
from adapters.base import RawRequest, Rejection, Response, Route, Translation
from adapters.fields import (
    ENVELOPE_EXTRAS,
    FieldError,
    Fields,
    batch_envelope,
    json_response,
    parse_json,
)
from gateway.errors import GatewayError
from gateway.model import Result
from gateway.pb.event_pb2 import Event

MAX_BATCH_BODY_BYTES = 5_000_000  # "Max body size 5 MB"

# Translates one record object; ``index`` is its position in the request (for generated ids).
RowTranslator = Callable[[RawRequest, Fields, int], Event]


class VibeFollow:
    """VibeFollow's ingestion API: events (single, all-or-nothing batch, per-row bulk) and users
    (single and per-record bulk upserts)."""

    name: str = events.DIALECT
    prefixes: Sequence[str] = ("/api/v1/events", "/api/v1/users")
    cors_allow_headers: Sequence[str] = ()

    def __init__(
        self,
        *,
        max_batch_events: int = 500,
        max_bulk_events: int = 1000,
        max_bulk_users: int = 1000,
    ) -> None:
        self.max_batch_events = max_batch_events
        self.max_bulk_events = max_bulk_events
        self.max_bulk_users = max_bulk_users
        self.routes: Sequence[Route] = (
            Route(path="/api/v1/events", name="single"),
            Route(path="/api/v1/events/batch", name="batch", max_body_bytes=MAX_BATCH_BODY_BYTES),
            Route(path="/api/v1/events/bulk", name="bulk", per_item=True),
            Route(path="/api/v1/users", name="users"),
            Route(path="/api/v1/users/bulk", name="users_bulk", per_item=True),
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
            items = self._items(request, body)
        except FieldError as exc:
            return Translation(credential=credential, failure=InvalidEvent(exc))
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        return Translation(credential=credential, items=items)

    def _items(self, request: RawRequest, body: Mapping[str, Any]) -> list[Event | Rejection]:
        name = request.route.name
        if name == "single":
            return [events.event(request, row_fields(body, ""), 0)]
        if name == "users":
            return [users.user(request, row_fields(body, ""), 0)]
        if name == "users_bulk":
            rows = users.rows(body, self.max_bulk_users)
            # The vendor's per-record code on this endpoint is "validation".
            items = _each(request, rows, users.user, "validation", "user")
            return _with_envelope(items, batch_envelope(body, ("users",)))
        if name == "bulk":
            rows = events.rows(body, self.max_bulk_events)
            items = _each(request, rows, events.event, "validation_failed", "event")
        else:
            rows = events.rows(body, self.max_batch_events)
            items = list(translate_all(rows, lambda f, i: events.event(request, f, i)))
        return _with_envelope(items, batch_envelope(body, ("events",)))

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        if request.route.per_item:
            return envelope.render_bulk(translation, result)
        # All or nothing: a result has no rejected item (a request with one is refused whole).
        return json_response(202, {"data": {"accepted": True}})

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        return envelope.render_error(error)


def _each(
    request: RawRequest, rows: Sequence[Any], translate_row: RowTranslator, code: str, noun: str
) -> list[Event | Rejection]:
    """Bulk: every row on its own; an invalid row is a ``Rejection`` (``code``), the rest are
    stored. The result carries the row's index, so a field is named within its row; a row that
    is not an object is "<noun> must be an object"."""
    items: list[Event | Rejection] = []
    for index, row in enumerate(rows):
        try:
            items.append(translate_row(request, row_fields(row, ""), index))
        except FieldError as exc:
            field = exc.field if exc.field != "event" else None  # the row is not an object
            message = describe(exc) if field else f"{noun} must be an object"
            items.append(Rejection(index=index, message=message, code=code, field=field))
    return items


def _with_envelope(items: list[Event | Rejection], kept: dict[str, Any]) -> list[Event | Rejection]:
    """The batch body's other top-level keys, on every event's extras (lossless)."""
    if kept:
        for item in items:
            if isinstance(item, Event):
                item.extras[ENVELOPE_EXTRAS] = kept
    return items
