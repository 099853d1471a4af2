"""The Databuddy dialect: the basket ingestion API (``POST /batch``, ``POST /track``, ``POST /``).

``/batch`` and ``/`` are the browser tracker's endpoints, keyed by a public website id
(``ProjectRef``); ``/batch`` answers per item (an invalid item is an error result inside a 200).
``/track`` is the server-side custom-event endpoint, keyed by an API key (or a website id), and is
all-or-nothing. The package: ``wire`` (the typed wire schema: what is valid, and the field a
rejection names), ``events`` (the one mapping from the wire to canonical events), ``envelope``
(the vendor's answers and errors); this module owns the routes, credentials and item shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from adapters.base import RawRequest, Rejection, Response, Route, Translation
from adapters.databuddy.envelope import (
    INVALID_BODY,
    SchemaRejection,
    error_response,
    event_result,
    rejection_result,
)
from adapters.databuddy.events import (
    CUSTOM_FIELDS,
    LINK_FIELDS,
    TRACK_FIELDS,
    custom_event,
    link_event,
    set_extras,
    track_event,
)
from adapters.databuddy.wire import (
    KINDS,
    SCHEMA_ERROR,
    UNKNOWN_TYPE,
    CustomPayload,
    LinkPayload,
    TrackPayload,
    decode_batch,
    parse,
)
from adapters.fields import JSON_MEDIA_TYPES, FieldError, generated_id, json_response, parse_json
from gateway.errors import GatewayError, InvalidRequest, MalformedBody
from gateway.model import ApiKey, Credential, ProjectRef, Result
from gateway.pb.event_pb2 import Event

BATCH = Route(path="/batch", name="batch", max_body_bytes=1024 * 1024, cors=True, per_item=True)
TRACK = Route(path="/track", name="track", cors=True)
SINGLE = Route(path="/", name="single", cors=True)
MAX_BATCH = 100


class Databuddy:
    """Databuddy's basket API, served at its native paths (it has no path prefix)."""

    name: str = "databuddy"
    routes: Sequence[Route] = (BATCH, TRACK, SINGLE)
    prefixes: Sequence[str] = ()
    cors_allow_headers: Sequence[str] = (
        "Content-Type",
        "Authorization",
        "X-Requested-With",
        "databuddy-client-id",
        "databuddy-sdk-name",
        "databuddy-sdk-version",
    )

    # -- translate -------------------------------------------------------------------------------

    def translate(self, request: RawRequest) -> Translation:
        if request.route.name == TRACK.name:
            return self._translate_track(request)
        credential = _client_id(request)
        if request.route.name == BATCH.name and request.media_type in JSON_MEDIA_TYPES:
            # The tracker's batches: decoded straight into structs when every item is a track
            # payload with only known keys (no dicts, no extras to keep).
            payloads = decode_batch(request.body)
            if payloads is not None and len(payloads) <= MAX_BATCH:
                return Translation(credential=credential, items=_track_items(request, payloads))
        try:
            body = parse_json(request)
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        if request.route.name != BATCH.name:
            return Translation(credential=credential, items=[beacon_item(request, 0, body)])
        if not isinstance(body, list):
            failure = MalformedBody("Batch endpoint expects array of events")
            return Translation(credential=credential, failure=failure)
        if len(body) > MAX_BATCH:
            return Translation(credential=credential, failure=InvalidRequest("Batch too large"))
        items = [beacon_item(request, index, item) for index, item in enumerate(body)]
        return Translation(credential=credential, items=items)

    def _translate_track(self, request: RawRequest) -> Translation:
        # The vendor checks the body before it authenticates: a failing body neither names the
        # website (no `websiteId` credential) nor claims any.
        credential = _track_credential(request, None)
        try:
            body = parse_json(request)
        except GatewayError as exc:
            return Translation(credential=credential, failure=exc)
        single = isinstance(body, dict)
        raw: list[Any] = [body] if single else body if isinstance(body, list) else []
        if not (single or isinstance(body, list)) or len(raw) > MAX_BATCH:
            return Translation(credential=credential, failure=InvalidRequest(INVALID_BODY))
        events: list[Event] = []
        claimed: set[str] = set()
        for index, data in enumerate(raw):
            prefix = "" if single else f"[{index}]."
            if not isinstance(data, dict):
                failure = InvalidRequest(INVALID_BODY, field=prefix.rstrip(".") or None)
                return Translation(credential=credential, failure=failure)
            try:
                payload = parse(data, CustomPayload, prefix=prefix)
                event = custom_event(payload, generated_id(request, index), request.received_at)
                set_extras(event, data, CUSTOM_FIELDS, prefix=prefix)
            except FieldError as exc:
                failure = InvalidRequest(INVALID_BODY, field=exc.field)
                return Translation(credential=credential, failure=failure)
            events.append(event)
            if payload.websiteId:
                claimed.add(payload.websiteId)
        credential = _track_credential(request, raw[0] if raw else None)
        return Translation(credential=credential, items=events, claimed_projects=frozenset(claimed))

    # -- render ----------------------------------------------------------------------------------

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        results: list[dict[str, Any]] = []
        batched = dict.fromkeys(KINDS, 0)
        for index, item in enumerate(translation.items):
            if isinstance(item, Rejection):
                results.append(rejection_result(item))
                continue
            answer = event_result(request, index, item, result[index])
            if answer["status"] == "success":
                batched[answer["type"]] += 1
            results.append(answer)
        if request.route.name == TRACK.name:
            if any(r["status"] != "success" for r in results):
                return json_response(400, {"status": "error", "message": INVALID_BODY})
            count = len(results)
            return json_response(200, {"status": "success", "type": "custom_event", "count": count})
        if request.route.name == SINGLE.name:
            # The tracker's single-event endpoint answers like one batch result, errors as 400.
            first = results[0] if results else {"status": "error", "message": SCHEMA_ERROR}
            if first["status"] != "success":
                first.pop("eventType", None)
                first.pop("eventId", None)
                return json_response(400, first)
            return json_response(200, {"status": "success", "type": first["type"]})
        body = {
            "status": "success",
            "batch": True,
            "processed": len(results),
            "batched": batched,
            "results": results,
        }
        return json_response(200, body)

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        return error_response(request.route.name if request is not None else None, error)


# -- items -------------------------------------------------------------------------------------


def _track_items(request: RawRequest, payloads: list[TrackPayload]) -> list[Event | Rejection]:
    """The items of a batch decoded whole: an event each, or the rejection of a check the
    struct could not make."""
    items: list[Event | Rejection] = []
    for index, p in enumerate(payloads):
        default_id = "" if p.eventId else generated_id(request, index)
        try:
            items.append(track_event(p, default_id, request.received_at))
        except FieldError as exc:
            items.append(_schema_rejection(index, "track", p.eventId, exc))
    return items


def beacon_item(request: RawRequest, index: int, item: Any) -> Event | Rejection:
    """One ``{"type", "payload"}`` item, or a bare item (the real tracker's form)."""
    if not isinstance(item, dict):
        # The vendor treats a non-object item as a `track` that fails its schema.
        return SchemaRejection(
            index=index, message=SCHEMA_ERROR, kind="track", field="", detail="must be an object"
        )
    # Mirrors the vendor's `event.type || "track"`: any falsy type means track.
    raw_kind = item.get("type") or "track"
    kind = raw_kind if isinstance(raw_kind, str) else orjson.dumps(raw_kind).decode()
    wrapped = "payload" in item
    data = item["payload"] if wrapped else item
    event_id = data.get("eventId") if isinstance(data, dict) else None
    event_id = event_id if isinstance(event_id, str) else None
    if kind not in KINDS:
        return Rejection(
            index=index, message=UNKNOWN_TYPE, code="unknown_type", kind=kind, event_id=event_id
        )
    if not isinstance(data, dict):
        return SchemaRejection(
            index=index,
            message=SCHEMA_ERROR,
            kind=kind,
            field="payload",
            detail="must be an object",
        )
    wrapper = {k: v for k, v in item.items() if k not in ("type", "payload")} if wrapped else {}
    try:
        if kind == "track":
            payload = parse(data, TrackPayload)
            default_id = "" if payload.eventId else generated_id(request, index)
            event = track_event(payload, default_id, request.received_at)
            known = TRACK_FIELDS if wrapped else TRACK_FIELDS | {"type"}
        else:
            event = link_event(parse(data, LinkPayload), request.received_at)
            known = LINK_FIELDS if wrapped else LINK_FIELDS | {"type"}
        set_extras(event, data, known, wrapper)
    except FieldError as exc:
        return _schema_rejection(index, kind, event_id, exc)
    return event


def _schema_rejection(index: int, kind: str, event_id: str | None, exc: FieldError) -> Rejection:
    return SchemaRejection(
        index=index,
        message=SCHEMA_ERROR,
        kind=kind,
        event_id=event_id,
        field=exc.field,
        detail=exc.message,
    )


# -- credentials -------------------------------------------------------------------------------


def _first(values: Sequence[str | None]) -> str | None:
    for value in values:
        if value is not None and value.strip():
            return value.strip()
    return None


def _client_id(request: RawRequest) -> Credential | None:
    """/batch and /: the website id from the query or the tracker's ``databuddy-client-id``."""
    q, h = request.query, request.headers
    found = _first([q.get("website_id"), q.get("client_id"), h.get("databuddy-client-id")])
    return ProjectRef(found) if found else None


def _track_credential(request: RawRequest, first_event: Any) -> Credential | None:
    """/track: a Bearer or X-Api-Key key; else ``website_id``; else the first ``websiteId``."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    key = _first([token if scheme.lower() == "bearer" else None, request.headers.get("x-api-key")])
    if key:
        return ApiKey(key)
    claimed = first_event.get("websiteId") if isinstance(first_event, dict) else None
    found = _first([request.query.get("website_id"), claimed if isinstance(claimed, str) else None])
    return ProjectRef(found) if found else None
