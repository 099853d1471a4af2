"""The Appizer adapter: its routes, and each route's way through a request.

Every route takes ``Authorization: Bearer <key>`` and one JSON object, and stores one event, or a
batch of at most ``max_batch_events`` stored whole or rejected with 400 naming
``events[i].field``. Each answers 200 ``{"success": true, ..., "message"}`` with the vendor's
members for that endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import adapters.appizer.envelope as envelope
import adapters.appizer.events as events
import adapters.appizer.users as users
from adapters.allornothing import InvalidEvent, bearer_key, body_object, row_fields, translate_all
from adapters.base import RawRequest, Response, Route, Translation
from adapters.fields import ENVELOPE_EXTRAS, FieldError, batch_envelope, json_response, parse_json
from gateway.errors import GatewayError
from gateway.model import Result
from gateway.pb.event_pb2 import Event


class Appizer:
    """Appizer's ingestion API: events (one per request, or an all-or-nothing batch), users to
    create or update, and user aliases."""

    name: str = events.DIALECT
    prefixes: Sequence[str] = ("/v1",)
    cors_allow_headers: Sequence[str] = ()

    def __init__(self, *, max_batch_events: int = 100) -> None:
        self.max_batch_events = max_batch_events
        self.routes: Sequence[Route] = (
            Route(path="/v1/events", name="single"),
            Route(path="/v1/events/batch", name="batch"),
            Route(path="/v1/users", name="identify"),
            Route(path="/v1/users/aliases", name="alias"),
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
        name = request.route.name
        if name == "single":
            return [events.event(request, row_fields(body, ""), 0)]
        if name == "identify":
            return [users.user(request, row_fields(body, ""))]
        if name == "alias":
            return [users.alias(request, row_fields(body, ""))]
        rows = events.rows(body, self.max_batch_events)
        kept = batch_envelope(body, ("events",))
        translated = translate_all(rows, lambda f, i: events.event(request, f, i))
        for event in translated if kept else ():
            event.extras[ENVELOPE_EXTRAS] = kept
        return translated

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        # All or nothing: a result has no rejected item (a request with one is refused whole).
        name = request.route.name
        event_id = result[0].event_id if result else ""
        body: dict[str, Any]
        if name == "single":
            body = {"event_id": event_id, "message": "Event tracked successfully"}
        elif name == "identify":
            # The vendor answers its own id of the user and echoes the client's as external_id;
            # the gateway keeps events, not user records: its id is the stored event's.
            [user] = translation.events
            body = {
                "user_id": event_id,
                "external_id": user.identity.user_id,
                "message": "User created/updated successfully",
            }
        elif name == "alias":
            [alias] = translation.events
            user_id = alias.identity.user_id or alias.extras["primary_user_id"]
            body = {
                "alias_id": alias.identity.previous_id,
                "user_id": user_id,
                "message": "Alias created",
            }
        else:
            body = {"processed_count": len(result), "message": "Batch events tracked successfully"}
        return json_response(200, {"success": True, **body})

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        return envelope.render_error(error)
