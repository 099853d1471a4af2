"""A fake dialect for tests: the smallest adapter that keeps the ``Adapter`` contract, beside the
real ones and never served by default (``adapters.default_adapters`` does not list it).

Tests of the registry, the fronts and the pipeline use it where a vendor's quirks would only get
in the way. Its wire: ``POST <path>`` with ``Authorization: Bearer <key>`` and a JSON array of
``{"name": str, "id"?: str}``; an item without a string ``name`` is rejected on its own (its
field named). The answer is ``{"accepted": n, "results": [{"index", "status", "code"?}]}``;
errors are ``{"error": code, "message": text}`` with the error's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.allornothing import bearer_key
from adapters.base import RawRequest, Rejection, Response, Route, Translation
from adapters.fields import generated_id, json_response, parse_json, to_timestamp
from gateway.errors import GatewayError, InvalidRequest
from gateway.model import Result, Status
from gateway.pb.event_pb2 import Event

DIALECT = "fake"


@dataclass
class FakeAdapter:
    """A dialect named ``name`` serving ``routes`` (by default ``POST /fake/events``)."""

    name: str = DIALECT
    routes: Sequence[Route] = (Route(path="/fake/events", name="events", per_item=True),)
    prefixes: Sequence[str] = ()
    cors_allow_headers: Sequence[str] = field(default_factory=tuple)

    def translate(self, request: RawRequest) -> Translation:
        credential = bearer_key(request.headers)
        try:
            body = parse_json(request)
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        if not isinstance(body, list):
            failure = InvalidRequest("the body must be a JSON array")
            return Translation(credential=credential, failure=failure)
        items: list[Event | Rejection] = []
        for index, item in enumerate(body):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                items.append(
                    Rejection(
                        index=index, message="name is required", code="missing_field", field="name"
                    )
                )
                continue
            given = item.get("id")
            event = Event(
                id=given if isinstance(given, str) and given else generated_id(request, index),
                dialect=self.name,
                name=name,
            )
            event.occurred_at.CopyFrom(to_timestamp(request.received_at))
            event.received_at.CopyFrom(event.occurred_at)
            items.append(event)
        return Translation(credential=credential, items=items)

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        results: list[dict[str, object]] = []
        for index, item in enumerate(translation.items):
            if isinstance(item, Rejection):
                results.append({"index": index, "status": "rejected", "code": item.code})
                continue
            outcome = result[index]
            entry: dict[str, object] = {"index": index, "status": outcome.status.value}
            if outcome.status is Status.REJECTED:
                entry["code"] = outcome.code
            results.append(entry)
        return json_response(200, {"accepted": result.accepted, "results": results})

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        return json_response(error.http_status, {"error": error.code, "message": error.message})
