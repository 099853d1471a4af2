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
from functools import partial
from typing import Any

from adapters.base import RawRequest, Rejection, Response, Route, Translation
from adapters.databuddy.beacon import beacon_item, track_items
from adapters.databuddy.credentials import api_key, client_id, track_credential
from adapters.databuddy.envelope import (
    INVALID_BODY,
    InvalidSchema,
    error_response,
    event_result,
    rejection_result,
)
from adapters.databuddy.events import CUSTOM_FIELDS, custom_event, received, set_extras
from adapters.databuddy.identity import identify_event
from adapters.databuddy.pixel import event_of, image
from adapters.databuddy.signals import SIGNALS, signal_events
from adapters.databuddy.wire import KINDS, SCHEMA_ERROR, CustomPayload, decode_batch, parse
from adapters.fields import JSON_MEDIA_TYPES, FieldError, generated_id, json_response, parse_json
from gateway.errors import GatewayError, InvalidRequest, MalformedBody
from gateway.model import Result
from gateway.pb.event_pb2 import Event

BATCH = Route(path="/batch", name="batch", max_body_bytes=1024 * 1024, cors=True, per_item=True)
TRACK = Route(path="/track", name="track", cors=True)
SINGLE = Route(path="/", name="single", cors=True)
_BEACON_BYTES = 1024 * 1024  # the vendor's payload limit on the tracker's endpoints
IDENTIFY = Route(path="/identify", name="identify", cors=True)
VITALS = Route(path="/vitals", name="vitals", max_body_bytes=_BEACON_BYTES, cors=True)
ERRORS = Route(path="/errors", name="errors", max_body_bytes=_BEACON_BYTES, cors=True)
ENGAGEMENT = Route(path="/engagement", name="engagement", max_body_bytes=_BEACON_BYTES, cors=True)
EVENTS = Route(path="/events", name="events", max_body_bytes=_BEACON_BYTES, cors=True)
PIXEL = Route(path="/px.jpg", name="pixel", method="GET")
MAX_BATCH = 100


class Databuddy:
    """Databuddy's basket API, served at its native paths (it has no path prefix)."""

    name: str = "databuddy"
    routes: Sequence[Route] = (
        BATCH,
        TRACK,
        SINGLE,
        IDENTIFY,
        VITALS,
        ERRORS,
        ENGAGEMENT,
        EVENTS,
        PIXEL,
    )
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
        name = request.route.name
        if name == TRACK.name:
            return self._translate_track(request)
        if name == IDENTIFY.name:
            return _translate_identify(request)
        credential = client_id(request)
        if name in SIGNALS:
            return _translate_signal(request, credential)
        if name == PIXEL.name:
            item = beacon_item(request, 0, event_of(request.query))
            return Translation(credential=credential, items=[item])
        if request.route.name == BATCH.name and request.media_type in JSON_MEDIA_TYPES:
            # The tracker's batches: decoded straight into structs when every item is a track
            # payload with only known keys (no dicts, no extras to keep).
            payloads = decode_batch(request.body)
            if payloads is not None and len(payloads) <= MAX_BATCH:
                return Translation(credential=credential, items=track_items(request, payloads))
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
        credential = track_credential(request, None)
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
        at = received(request.received_at)
        for index, data in enumerate(raw):
            prefix = "" if single else f"[{index}]."
            if not isinstance(data, dict):
                failure = InvalidRequest(INVALID_BODY, field=prefix.rstrip(".") or None)
                return Translation(credential=credential, failure=failure)
            try:
                payload = parse(data, CustomPayload, prefix=prefix)
                event = custom_event(payload, generated_id(request, index), at)
                set_extras(event, data, CUSTOM_FIELDS, prefix=prefix)
            except FieldError as exc:
                failure = InvalidRequest(INVALID_BODY, field=exc.field)
                return Translation(credential=credential, failure=failure)
            events.append(event)
            if payload.websiteId:
                claimed.add(payload.websiteId)
        credential = track_credential(request, raw[0] if raw else None)
        return Translation(credential=credential, items=events, claimed_projects=frozenset(claimed))

    # -- render ----------------------------------------------------------------------------------

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        name = request.route.name
        if name == PIXEL.name:
            return image()
        if name == IDENTIFY.name:
            return json_response(200, {"status": "success", "type": "identify"})
        if name in SIGNALS:
            answer = {"status": "success", "type": SIGNALS[name].answer_type}
            return json_response(200, {**answer, "count": len(translation.items)})
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
        if request is not None and request.route.name == PIXEL.name:
            return image()  # an image tag has no use for an error body
        return error_response(request.route.name if request is not None else None, error)


# -- the other endpoints ----------------------------------------------------------------------


def _translate_identify(request: RawRequest) -> Translation:
    """/identify: with an API key the body must name its website (``websiteId``); the tracker
    sends ``client_id`` instead."""
    key = api_key(request.headers)
    credential = key if key is not None else client_id(request)
    try:
        body = parse_json(request)
        if not isinstance(body, dict):
            raise InvalidRequest(INVALID_BODY)
        event, website_id = identify_event(body, generated_id(request, 0), request.received_at)
    except GatewayError as exc:
        return Translation(credential=credential, failure=exc)
    except FieldError as exc:
        return Translation(credential=credential, failure=InvalidSchema(exc))
    if key is not None and website_id is None:
        return Translation(credential=credential, failure=InvalidRequest("Missing websiteId"))
    claimed = frozenset({website_id}) if website_id else frozenset()
    return Translation(credential=credential, items=[event], claimed_projects=claimed)


def _translate_signal(request: RawRequest, credential: Any) -> Translation:
    """/vitals, /errors, /engagement, /events: an array, validated whole."""
    signal = SIGNALS[request.route.name]
    try:
        body = parse_json(request)
    except GatewayError as exc:
        return Translation(credential=credential, failure=exc)
    if not isinstance(body, list) or not body:
        return Translation(credential=credential, failure=InvalidRequest(INVALID_BODY))
    if len(body) > signal.max_items:  # the vendor's array schema: .max(n)
        too_many = FieldError("", f"must have at most {signal.max_items} items")
        return Translation(credential=credential, failure=InvalidSchema(too_many))
    at, ids = request.received_at, partial(generated_id, request)
    try:
        return Translation(credential=credential, items=signal_events(signal, body, at, ids))
    except FieldError as exc:
        return Translation(credential=credential, failure=InvalidSchema(exc))
