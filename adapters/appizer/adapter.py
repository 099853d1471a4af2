"""The Appizer adapter: its routes, and each route's way through a request.

Every route takes ``Authorization: Bearer <key>`` and one JSON object. A batch of at most
``max_batch_events`` is stored whole or rejected with 400 naming ``events[i].field``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import adapters.appizer.envelope as envelope
import adapters.appizer.events as events
from adapters.allornothing import InvalidEvent, bearer_key, body_object, row_fields, translate_all
from adapters.base import RawRequest, Response, Route, Translation
from adapters.fields import ENVELOPE_EXTRAS, FieldError, batch_envelope, json_response, parse_json
from gateway.errors import GatewayError
from gateway.model import Result
from gateway.pb.event_pb2 import Event


class Appizer:
    """Appizer's event API: one event per request, or an all-or-nothing batch."""

    name: str = events.DIALECT
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
            items = self._events(request, body)
        except FieldError as exc:
            return Translation(credential=credential, failure=InvalidEvent(exc))
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        return Translation(credential=credential, items=items)

    def _events(self, request: RawRequest, body: Mapping[str, Any]) -> list[Event]:
        if request.route.name == "single":
            return [events.event(request, row_fields(body, ""), 0)]
        rows = events.rows(body, self.max_batch_events)
        kept = batch_envelope(body, ("events",))
        translated = translate_all(rows, lambda f, i: events.event(request, f, i))
        for event in translated if kept else ():
            event.extras[ENVELOPE_EXTRAS] = kept
        return translated

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
        return envelope.render_error(error)
