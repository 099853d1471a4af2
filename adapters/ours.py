"""The Ours Privacy dialect: ``POST /api/v1/track`` and ``POST /api/v1/batch`` as canonical events.

Translates Ours Privacy's ingestion API (seed 003, ``docs/dialects.md`` §2) into ``Event``s and
renders results in its envelope: ``{"success": bool, ...}``, with per-row ``results`` by index on
``/batch`` (200 all accepted, 207 partial). The project key is the body's ``token``, not a header.
Every row's ``distinctId`` is the event id, so a client retrying a batch deduplicates by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final, NotRequired, TypedDict

from adapters.base import RawRequest, Rejection, Response, Route, Translation
from adapters.fields import (
    ENVELOPE_EXTRAS,
    FieldError,
    Fields,
    batch_envelope,
    check_depth,
    generated_id,
    json_response,
    parse_json,
    to_struct,
    to_timestamp,
)
from gateway.errors import (
    GatewayError,
    InvalidCredential,
    InvalidRequest,
    MalformedBody,
    MissingCredential,
    PayloadTooLarge,
    RetryableError,
    StorageUnavailable,
    UnknownProject,
    UnsupportedMediaType,
    error_headers,
)
from gateway.model import ApiKey, Result, Status
from gateway.pb.event_pb2 import Event, EventType

TRACK: Final = Route(path="/api/v1/track", name="track")
BATCH: Final = Route(path="/api/v1/batch", name="batch", per_item=True)
# The SDK's visitor.upsert: "fires a $identify event, making the call visible in the event stream".
IDENTIFY: Final = Route(path="/api/v1/identify", name="identify")
IDENTIFY_EVENT: Final = "$identify"

MAX_TOKEN_CHARS: Final = 250
MAX_NAME_CHARS: Final = 1000
MAX_ID_CHARS: Final = 400
MAX_EMAIL_CHARS: Final = 1000
MAX_PROPERTY_KEYS: Final = 200
# "≤ 5 levels deep" counts the properties object itself as level 1 (``json_depth({}) == 1``).
MAX_PROPERTY_LEVELS: Final = 5
MAX_PROPERTY_BYTES: Final = 1 << 20
# Client clocks run a little fast; a `time` up to this far past our clock is not "the future".
CLOCK_SKEW: Final = timedelta(minutes=5)
# The vendor's only per-row codes; an ingestor rejection with any other code is an invalid_event.
ROW_CODES: Final = frozenset({"invalid_event", "queue_failed"})


class RowResult(TypedDict):
    """One entry of a /batch response's ``results``."""

    index: int
    success: bool
    code: NotRequired[str]
    message: NotRequired[str]


class OursPrivacy:
    """The Ours Privacy adapter (``Adapter`` protocol)."""

    name = "ours"
    routes: Sequence[Route] = (TRACK, BATCH, IDENTIFY)
    # Only /api/v1: the registry gives the longer /api/v1/events to VibeFollow.
    prefixes: Sequence[str] = ("/api/v1",)
    # Server-side API (the token is a secret in the body): no browser CORS.
    cors_allow_headers: Sequence[str] = ()

    def __init__(self, *, max_batch_events: int = 1000) -> None:
        self.max_batch_events = max_batch_events

    def translate(self, request: RawRequest) -> Translation:
        try:
            body = parse_json(request)
        except (MalformedBody, UnsupportedMediaType) as exc:
            return Translation(failure=exc)
        if not isinstance(body, dict):
            return Translation(failure=MalformedBody("Request body must be a JSON object"))
        try:
            token = Fields(body).text("token", min_len=1, max_len=MAX_TOKEN_CHARS, strip=True)
        except FieldError:
            token = None
        if token is None:
            # Nothing is translated without a credential: the gateway answers 401 "Missing token".
            return Translation()
        credential = ApiKey(token)
        if request.route.name == BATCH.name:
            return self._batch(request, credential, body)
        # /track and /identify: the body is one row plus its token.
        try:
            if request.route.name == IDENTIFY.name:
                event = _identify(request, body)
            else:
                event = _event(request, body, index=0, prefix="", require_id=False)
        except FieldError as exc:
            failure = InvalidRequest(str(exc), field=exc.field)
            return Translation(credential=credential, failure=failure)
        return Translation(credential=credential, items=(event,))

    def _batch(self, request: RawRequest, credential: ApiKey, body: dict[str, Any]) -> Translation:
        rows = body.get("events")
        if not isinstance(rows, list):
            failure: GatewayError = InvalidRequest("events must be an array", field="events")
            return Translation(credential=credential, failure=failure)
        if not rows:
            failure = InvalidRequest("events must not be empty", field="events")
            return Translation(credential=credential, failure=failure)
        if len(rows) > self.max_batch_events:
            failure = PayloadTooLarge(
                f"Too many events: {len(rows)} exceeds the limit of "
                f"{self.max_batch_events} events per batch",
                limit=self.max_batch_events,
                field="events",
            )
            return Translation(credential=credential, failure=failure)
        try:
            envelope = batch_envelope(body, ("token", "events"))
        except FieldError as exc:
            return Translation(credential=credential, failure=InvalidRequest(str(exc)))
        items = [_row(request, index, row, envelope) for index, row in enumerate(rows)]
        return Translation(credential=credential, items=items)

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        results = _results(translation, result)
        accepted = sum(1 for result in results if result["success"])
        failed = len(results) - accepted
        if request.route.name != BATCH.name:
            if results and not failed:
                return json_response(200, {"success": True})
            message = next((r.get("message", "") for r in results), "") or "Event not accepted"
            return json_response(400, {"success": False, "error": message})
        body: dict[str, Any] = {"success": not failed, "accepted": accepted, "failed": failed}
        body["results"] = results
        if not failed:
            return json_response(200, body)
        if accepted:
            return json_response(207, body)
        # Nothing accepted. The vendor answers 500 with per-row results when every row failed
        # queue transport (retry those rows); we keep that, and when every row is invalid we
        # answer 400 (its "no row was accepted: fix the request") yet keep the per-row results,
        # which tell the client which rows to fix. 207 would tell its SDK "success".
        if any(result.get("code") == "queue_failed" for result in results):
            body.update(error="No event could be queued", retryable=True)
            return json_response(500, body)
        body["error"] = "No event accepted: every event is invalid"
        return json_response(400, body)

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        status, message = error.http_status, error.message
        if isinstance(error, MissingCredential):
            status, message = 401, "Missing token"
        elif isinstance(error, InvalidCredential | UnknownProject):
            # The token is the project: an unknown project is a bad token, not a 404.
            status, message = 401, "Invalid token"
        elif isinstance(error, InvalidRequest):
            status = 400  # the vendor has no 422 for a bad body
        elif isinstance(error, StorageUnavailable):
            status = 500  # seed 003: "500 means the request hit a transient failure"
        body: dict[str, Any] = {"success": False, "error": message}
        if isinstance(error, PayloadTooLarge):
            body["limit"] = error.limit
        if isinstance(error, RetryableError):
            # The official SDK retries 408/409/429/5xx and honours Retry-After.
            body["retryable"] = True
        return json_response(status, body, error_headers(error))


def _row(
    request: RawRequest, index: int, row: Any, envelope: Mapping[str, Any]
) -> Event | Rejection:
    """One /batch row: an event, or a rejection reported at its index."""
    if not isinstance(row, dict):
        field = f"events[{index}]"
        return Rejection(index=index, message=f"{field}: must be an object", field=field)
    try:
        event = _event(request, row, index=index, prefix=f"events[{index}].", require_id=True)
    except FieldError as exc:
        return Rejection(index=index, message=str(exc), field=exc.field)
    if envelope:
        event.extras[ENVELOPE_EXTRAS] = dict(envelope)
    return event


def _event(
    request: RawRequest, row: dict[str, Any], *, index: int, prefix: str, require_id: bool
) -> Event:
    """One event row as a canonical event; ``FieldError`` names the first bad field."""
    # The token is a secret, never an event field: /track rows carry it, and clients reusing
    # /track payloads as /batch rows may too. It stays out of the stored extras.
    row = {k: v for k, v in row.items() if k != "token"}
    fields = Fields(row, prefix=prefix)
    name = fields.text("event", required=True, min_len=1, max_len=MAX_NAME_CHARS) or ""
    distinct_id = fields.text("distinctId", required=require_id, min_len=1, max_len=MAX_ID_CHARS)
    user_id = fields.text("userId", min_len=1, max_len=MAX_ID_CHARS)
    external_id = fields.text("externalId", min_len=1, max_len=MAX_ID_CHARS)
    email = fields.text("email", max_len=MAX_EMAIL_CHARS)
    # The vendor refuses times older than 7 days, but /batch exists for backfills and replays:
    # we accept any time from 2000-01-01 (the shared floor) up to now plus clock skew.
    occurred = fields.epoch_ms("time", not_after=request.received_at + CLOCK_SKEW)
    # The vendor's quickstart calls eventProperties `properties`: accept it as an alias. When
    # both are sent, eventProperties wins and `properties` is kept in extras.
    key = "eventProperties"
    if row.get(key) is None and "properties" in row:
        key = "properties"
    properties = fields.mapping(
        key,
        max_keys=MAX_PROPERTY_KEYS,
        max_depth=MAX_PROPERTY_LEVELS,
        max_bytes=MAX_PROPERTY_BYTES,
    )
    user_properties = fields.mapping("userProperties")
    default_properties = fields.mapping("defaultProperties")
    context = fields.mapping("identityContext")
    extras = fields.rest()
    if default_properties is not None:
        extras["defaultProperties"] = default_properties  # no typed home: kept verbatim
    ip = user_agent = None
    if context is not None:
        context_fields = Fields(context, prefix=f"{prefix}identityContext.")
        ip = context_fields.text("ip")
        user_agent = context_fields.text("userAgent")
        if rest := context_fields.rest():
            extras["identityContext"] = rest
    check_depth(extras, prefix=prefix)

    event = Event(
        id=distinct_id or generated_id(request, index),
        dialect=OursPrivacy.name,
        type=EventType.EVENT_TYPE_TRACK,
        name=name,
        occurred_at=to_timestamp(occurred or request.received_at),
        received_at=to_timestamp(request.received_at),
    )
    if distinct_id:
        event.identity.distinct_id = distinct_id
    if user_id:
        event.identity.user_id = user_id
    if external_id:
        event.identity.external_id = external_id
    if email:
        event.identity.email = email
    if ip:
        event.device.ip = ip
    if user_agent:
        event.device.user_agent = user_agent
    if properties is not None:
        event.properties.CopyFrom(to_struct(properties))
    if user_properties is not None:
        event.user_properties.CopyFrom(to_struct(user_properties))
    if extras:
        event.extras.CopyFrom(to_struct(extras))
    return event


def _identify(request: RawRequest, body: dict[str, Any]) -> Event:
    """A visitor upsert (``POST /identify``) as an identify event named ``$identify``, as the
    vendor records it: ``userProperties`` is required (an object), the identity fields are those
    of ``/track``; it has no event name, ``distinctId`` or ``time`` of its own."""
    if not isinstance(body.get("userProperties"), dict):
        raise FieldError(
            "userProperties", "required" if "userProperties" not in body else "must be an object"
        )
    reserved = {"event", "distinctId", "time", "eventProperties", "properties"}
    row = {k: v for k, v in body.items() if k not in reserved}
    event = _event(request, {**row, "event": IDENTIFY_EVENT}, index=0, prefix="", require_id=False)
    event.type = EventType.EVENT_TYPE_IDENTIFY
    kept = {k: body[k] for k in reserved & body.keys()}
    if kept:  # lossless: what identify does not read is kept under its wire name
        event.extras.update(kept)
    return event


def _results(translation: Translation, result: Result) -> list[RowResult]:
    """Per-row results in request order: rejections where they were, outcomes for events."""
    results: list[RowResult] = []
    for position, item in enumerate(translation.items):
        if isinstance(item, Rejection):
            results.append(_failure(item.index, item.code, item.message))
            continue
        outcome = result[position]
        if outcome.status is Status.REJECTED:
            code = outcome.code if outcome.code in ROW_CODES else "invalid_event"
            results.append(_failure(position, code, outcome.message or outcome.code))
        else:
            # Ours: a duplicate distinctId counts as accepted (the first copy is stored).
            results.append({"index": position, "success": True})
    return results


def _failure(index: int, code: str, message: str) -> RowResult:
    return {"index": index, "success": False, "code": code, "message": message}
