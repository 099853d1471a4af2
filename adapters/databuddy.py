"""The Databuddy dialect: the basket ingestion API (``POST /batch``, ``POST /track``, ``POST /``).

``/batch`` and ``/`` are the browser tracker's endpoints, keyed by a public website id
(``ProjectRef``); ``/batch`` answers per item (an invalid item is an error result inside a 200).
``/track`` is the server-side custom-event endpoint, keyed by an API key (or a website id), and is
all-or-nothing. Payload fields are mapped by ``adapters.databuddy_events`` (valid tracker
payloads by ``adapters.databuddy_fast``); this module owns credentials, request and item shapes
and the vendor's response and error envelopes (dialects.md §1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import orjson

from adapters.base import RawRequest, Rejection, Response, Route, Translation
from adapters.databuddy_events import (
    KINDS,
    SCHEMA_ERROR,
    UNKNOWN_TYPE,
    SchemaRejection,
    custom_event,
    outgoing_link_event,
    set_extras,
    track_event,
)
from adapters.databuddy_fast import fast_batch, fast_track_event
from adapters.fields import (
    JSON_MEDIA_TYPES,
    FieldError,
    Fields,
    generated_id,
    json_response,
    parse_json,
)
from gateway.errors import (
    GatewayError,
    InvalidCredential,
    InvalidRequest,
    MalformedBody,
    MethodNotAllowed,
    MissingCredential,
    MissingScope,
    OriginNotAllowed,
    ProjectMismatch,
    RetryableError,
    UnknownProject,
)
from gateway.model import ApiKey, Credential, Outcome, ProjectRef, Result, Status
from gateway.pb.event_pb2 import Event, EventType

BATCH = Route(path="/batch", name="batch", max_body_bytes=1024 * 1024, cors=True, per_item=True)
TRACK = Route(path="/track", name="track", cors=True)
SINGLE = Route(path="/", name="single", cors=True)
MAX_BATCH = 100
_OUTGOING_LINK = EventType.EVENT_TYPE_OUTGOING_LINK
_UUID_LENGTH = 36
INVALID_BODY = "Invalid request body"


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
            # The tracker's batches are mostly page views: decoded straight into events when
            # every item is one the fast path builds.
            fast = fast_batch(request.body, request.received_at, partial(generated_id, request))
            if fast is not None and len(fast) <= MAX_BATCH:
                return Translation(credential=credential, items=fast)
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
                field = prefix.rstrip(".") or None
                return Translation(
                    credential=credential, failure=InvalidRequest(INVALID_BODY, field=field)
                )
            f = Fields(data, prefix=prefix)
            try:
                event, website_id = custom_event(
                    f, default_id=generated_id(request, index), received_at=request.received_at
                )
                set_extras(f, event)
            except FieldError as exc:
                failure = InvalidRequest(INVALID_BODY, field=exc.field)
                return Translation(credential=credential, failure=failure)
            events.append(event)
            if website_id is not None:
                claimed.add(website_id)
        credential = _track_credential(request, raw[0] if raw else None)
        return Translation(credential=credential, items=events, claimed_projects=frozenset(claimed))

    # -- render ----------------------------------------------------------------------------------

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        results: list[dict[str, Any]] = []
        batched = dict.fromkeys(KINDS, 0)
        for index, item in enumerate(translation.items):
            if isinstance(item, Rejection):
                results.append(_rejection_result(item))
                continue
            answer = _event_result(request, index, item, result[index])
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
        route = request.route.name if request is not None else None
        status, message = _error_form(route, error)
        headers: dict[str, str] = {}
        if isinstance(error, RetryableError) and error.retry_after is not None:
            headers["Retry-After"] = str(max(0, math.ceil(error.retry_after)))
        if isinstance(error, MethodNotAllowed) and error.allowed:
            headers["Allow"] = ", ".join(error.allowed)
        return json_response(status, {"status": "error", "message": message}, headers)


# -- items -------------------------------------------------------------------------------------


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
    f = Fields(data)
    wrapper: dict[str, Any] = {}
    if wrapped:
        wrapper = {k: v for k, v in item.items() if k not in ("type", "payload")}
    else:
        f.used.add("type")
    # The generated id is needed only when the payload brings none (hashing it is a good part
    # of an event's cost).
    default_id = "" if event_id or kind != "track" else generated_id(request, index)
    if kind == "track" and not wrapper:
        fast = fast_track_event(
            data, default_id=default_id, received_at=request.received_at, bare=not wrapped
        )
        if fast is not None:
            return fast
    try:
        if kind == "track":
            event = track_event(f, default_id=default_id, received_at=request.received_at)
        else:
            event = outgoing_link_event(f, received_at=request.received_at)
        set_extras(f, event, wrapper)
    except FieldError as exc:
        return SchemaRejection(
            index=index,
            message=SCHEMA_ERROR,
            kind=kind,
            event_id=event_id,
            field=exc.field,
            detail=exc.message,
        )
    return event


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


def _rejection_result(item: Rejection) -> dict[str, Any]:
    if item.code == "unknown_type":
        return {"status": "error", "message": item.message, "eventType": item.kind}
    result: dict[str, Any] = {
        "status": "error",
        "message": item.message,
        "eventType": item.kind or "track",
    }
    if item.event_id is not None:
        result["eventId"] = item.event_id
    detail = item.detail if isinstance(item, SchemaRejection) else item.message
    result["errors"] = [{"field": item.field or "", "message": detail}]
    return result


def _event_result(
    request: RawRequest, index: int, event: Event, outcome: Outcome
) -> dict[str, Any]:
    link = event.type == _OUTGOING_LINK
    kind = "outgoing_link" if link else "track"
    result: dict[str, Any] = {"status": "success", "type": kind}
    # Like the vendor, echo `eventId` only when the client sent one (ours are generated ids,
    # UUIDs: an id of another length cannot be one).
    event_id = event.id
    given = link or len(event_id) != _UUID_LENGTH or event_id != generated_id(request, index)
    if outcome.status is Status.REJECTED:
        message = outcome.message or SCHEMA_ERROR
        result = {"status": "error", "message": message, "eventType": kind}
        if outcome.field:
            result["errors"] = [{"field": outcome.field, "message": message}]
    if given:
        result["eventId"] = event_id
    return result


# -- errors ------------------------------------------------------------------------------------

# The vendor's own forms, which differ between the tracker endpoints and /track.
_BEACON_ERRORS: Mapping[type[GatewayError], tuple[int, str]] = {
    MissingCredential: (400, "Missing client ID"),
    InvalidCredential: (400, "Invalid or inactive client ID"),
    UnknownProject: (400, "Invalid or inactive client ID"),
}
_TRACK_ERRORS: Mapping[type[GatewayError], tuple[int, str]] = {
    MissingCredential: (401, "API key or website_id required"),
    InvalidCredential: (401, "Invalid API key"),
    UnknownProject: (404, "Website not found"),
    InvalidRequest: (400, INVALID_BODY),
}
_COMMON_ERRORS: Mapping[type[GatewayError], tuple[int, str]] = {
    MissingScope: (403, "API key missing track:events scope"),
    ProjectMismatch: (403, "Website scope mismatch"),
    OriginNotAllowed: (403, "Origin not authorized"),
}


def _error_form(route: str | None, error: GatewayError) -> tuple[int, str]:
    """The vendor's status and message for ``error`` on ``route`` (None: no route matched)."""
    table = {TRACK.name: _TRACK_ERRORS, BATCH.name: _BEACON_ERRORS, SINGLE.name: _BEACON_ERRORS}
    forms = {**_COMMON_ERRORS, **table.get(route or "", {})}
    for cls in type(error).__mro__:
        if cls in forms:
            return forms[cls]
    return error.http_status, error.message
