"""Unit tests of the Ours Privacy adapter: limits, ids, times, extras, rendering, determinism."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict

from adapters.base import RawRequest, Rejection, Route, Translation
from adapters.fields import generated_id
from adapters.ours import BATCH, TRACK, OursPrivacy
from adapters.registry import Registry
from gateway.errors import (
    GatewayError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidCredential,
    InvalidRequest,
    MalformedBody,
    MethodNotAllowed,
    MissingCredential,
    MissingScope,
    OriginNotAllowed,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    ProjectMismatch,
    RateLimited,
    RouteNotFound,
    StorageUnavailable,
    UnknownProject,
    UnsupportedMediaType,
    ValidationFailed,
)
from gateway.model import ApiKey, Outcome, Status
from gateway.pb.event_pb2 import Event, EventType
from tests.adapters.helpers import RECEIVED, raw_request, result_of

NOW = RECEIVED
NOW_MS = int(NOW.timestamp() * 1000)
TOKEN = "ours_test_token"
ADAPTER = OursPrivacy()


def request(
    route: Route,
    body: Any = None,
    *,
    raw: bytes | None = None,
    media_type: str = "application/json",
    request_id: str = "req-1",
    idempotency_key: str | None = None,
) -> RawRequest:
    return raw_request(
        route,
        raw if raw is not None else body,
        media_type=media_type,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


def track(**row: Any) -> Translation:
    return ADAPTER.translate(request(TRACK, {"token": TOKEN, **row}))


def batch(*rows: Any, adapter: OursPrivacy = ADAPTER, **envelope: Any) -> Translation:
    return adapter.translate(request(BATCH, {"token": TOKEN, "events": list(rows), **envelope}))


def one_event(translation: Translation) -> Event:
    assert translation.failure is None, translation.failure
    [event] = translation.events
    return event


def track_error(**row: Any) -> str:
    failure = track(**row).failure
    assert isinstance(failure, InvalidRequest)
    return failure.message


def batch_rejection(row: Any) -> Rejection:
    [item] = batch(row).items
    assert isinstance(item, Rejection)
    return item


def nested(levels: int) -> dict[str, Any]:
    """A JSON object ``levels`` deep (``{"k": 1}`` is 1)."""
    value: dict[str, Any] = {"k": 1}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def body_of(response: Any) -> Any:
    return json.loads(response.body)


# --- the seam -------------------------------------------------------------------------------


def test_routes_and_registry() -> None:
    assert ADAPTER.name == "ours"
    assert [(r.method, r.path, r.name) for r in ADAPTER.routes] == [
        ("POST", "/api/v1/track", "track"),
        ("POST", "/api/v1/batch", "batch"),
        ("POST", "/api/v1/identify", "identify"),
    ]
    registry = Registry((ADAPTER,))
    assert registry.match("POST", "/api/v1/batch").route == BATCH
    assert registry.owner("/api/v1/nope") is ADAPTER
    assert ADAPTER.cors_allow_headers == ()


def test_track_minimal_event() -> None:
    translation = track(event="Signed Up", distinctId="d-1")
    assert translation.credential == ApiKey(TOKEN)
    event = one_event(translation)
    assert (event.id, event.name, event.dialect) == ("d-1", "Signed Up", "ours")
    assert event.type == EventType.EVENT_TYPE_TRACK
    assert event.identity.distinct_id == "d-1"
    assert event.occurred_at.ToDatetime(UTC) == NOW == event.received_at.ToDatetime(UTC)
    assert event.project_id == ""
    assert not event.HasField("extras")


def test_track_without_distinct_id_gets_generated_id() -> None:
    req = request(TRACK, {"token": TOKEN, "event": "e"})
    event = one_event(ADAPTER.translate(req))
    assert event.id == generated_id(req, 0)
    assert event.identity.distinct_id == ""


def test_batch_requires_distinct_id() -> None:
    rejection = batch_rejection({"event": "e"})
    assert (rejection.index, rejection.code) == (0, "invalid_event")
    assert rejection.message == "events[0].distinctId: required"
    assert rejection.field == "events[0].distinctId"


def test_batch_rows_in_order_with_rejections_at_their_index() -> None:
    translation = batch({"event": "a", "distinctId": "1"}, 42, {"event": "c", "distinctId": "3"})
    kinds = [type(item).__name__ for item in translation.items]
    assert kinds == ["Event", "Rejection", "Event"]
    assert [e.id for e in translation.events] == ["1", "3"]
    rejection = translation.items[1]
    assert isinstance(rejection, Rejection)
    assert (rejection.index, rejection.message) == (1, "events[1]: must be an object")


# --- credential -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("  padded  ", ApiKey("padded")),
        ("t" * 250, ApiKey("t" * 250)),
        ("t" * 251, None),
        ("", None),
        ("   ", None),
        (42, None),
    ],
)
def test_token(token: Any, expected: ApiKey | None) -> None:
    translation = ADAPTER.translate(request(TRACK, {"token": token, "event": "e"}))
    assert translation.credential == expected
    if expected is None:  # no credential: nothing translated, the gateway answers 401
        assert translation == Translation()


def test_missing_token_translates_nothing() -> None:
    assert ADAPTER.translate(request(BATCH, {"events": [{"event": "e"}]})) == Translation()


# --- request-level failures -----------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000])
def test_malformed_body(raw: bytes) -> None:
    translation = ADAPTER.translate(request(BATCH, raw=raw))
    assert isinstance(translation.failure, MalformedBody)
    assert translation.credential is None and not translation.items


@pytest.mark.parametrize("raw", [b"null", b"[]", b'"x"', b"1"])
def test_body_not_an_object(raw: bytes) -> None:
    for route in (TRACK, BATCH):
        failure = ADAPTER.translate(request(route, raw=raw)).failure
        assert isinstance(failure, MalformedBody)
        assert ADAPTER.render_error(None, failure).status == 400


def test_unsupported_media_type() -> None:
    translation = ADAPTER.translate(request(BATCH, raw=b"<x/>", media_type="application/xml"))
    assert isinstance(translation.failure, UnsupportedMediaType)


def test_text_plain_json_is_accepted() -> None:
    body = orjson.dumps({"token": TOKEN, "event": "e"})
    assert ADAPTER.translate(request(TRACK, raw=body, media_type="text/plain")).events


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (None, "events must be an array"),
        ({}, "events must be an array"),
        ([], "events must not be empty"),
    ],
)
def test_batch_shape(events: Any, message: str) -> None:
    translation = ADAPTER.translate(request(BATCH, {"token": TOKEN, "events": events}))
    assert translation.credential == ApiKey(TOKEN)
    assert isinstance(translation.failure, InvalidRequest)
    assert translation.failure.message == message
    assert not translation.items


def test_batch_size_limit() -> None:
    adapter = OursPrivacy(max_batch_events=3)
    rows = [{"event": "e", "distinctId": str(i)} for i in range(4)]
    assert len(batch(*rows[:3], adapter=adapter).events) == 3
    failure = batch(*rows, adapter=adapter).failure
    assert isinstance(failure, PayloadTooLarge)
    assert failure.limit == 3
    assert body_of(adapter.render_error(None, failure)) == {
        "success": False,
        "error": "Too many events: 4 exceeds the limit of 3 events per batch",
        "limit": 3,
    }
    assert OursPrivacy().max_batch_events == 1000


def test_track_invalid_row_is_a_request_failure() -> None:
    translation = track(distinctId="d")
    assert isinstance(translation.failure, InvalidRequest)
    assert translation.failure.field == "event"
    assert not translation.items
    response = ADAPTER.render_error(request(TRACK, {}), translation.failure)
    assert (response.status, body_of(response)) == (
        400,
        {"success": False, "error": "event: required"},
    )


# --- field limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ok", "too_long"),
    [
        ("event", 1000, 1001),
        ("distinctId", 400, 401),
        ("userId", 400, 401),
        ("externalId", 400, 401),
    ],
)
def test_text_lengths(key: str, ok: int, too_long: int) -> None:
    row = {"event": "e", "distinctId": "d"}
    assert one_event(track(**{**row, key: "x" * ok}))
    assert track_error(**{**row, key: "x" * too_long}) == f"{key}: must be at most {ok} characters"
    assert track_error(**{**row, key: ""}) == f"{key}: required"
    assert track_error(**{**row, key: 7}) == f"{key}: must be a string"


def test_email_length() -> None:
    assert one_event(track(event="e", email="a" * 1000)).identity.email == "a" * 1000
    assert track_error(event="e", email="a" * 1001) == "email: must be at most 1000 characters"


def test_property_key_limit() -> None:
    props = {f"k{i}": i for i in range(200)}
    assert len(one_event(track(event="e", eventProperties=props)).properties.fields) == 200
    props["k200"] = 200
    assert track_error(event="e", eventProperties=props) == (
        "eventProperties: must have at most 200 keys"
    )


def test_property_depth_limit() -> None:
    assert one_event(track(event="e", eventProperties=nested(5)))
    assert track_error(event="e", eventProperties=nested(6)) == (
        "eventProperties: must be nested at most 5 levels deep"
    )


def test_property_size_limit() -> None:
    overhead = len(orjson.dumps({"k": ""}))
    assert one_event(track(event="e", eventProperties={"k": "x" * ((1 << 20) - overhead)}))
    big = {"k": "x" * ((1 << 20) - overhead + 1)}
    assert track_error(event="e", eventProperties=big) == (
        "eventProperties: must be at most 1048576 bytes serialized"
    )


def test_properties_must_be_objects() -> None:
    for key in ("eventProperties", "properties", "userProperties", "defaultProperties"):
        assert track_error(event="e", **{key: [1]}) == f"{key}: must be an object"
    assert track_error(event="e", identityContext="x") == "identityContext: must be an object"
    assert (
        track_error(event="e", identityContext={"ip": 1}) == "identityContext.ip: must be a string"
    )


def test_unknown_keys_nested_too_deep_are_refused() -> None:
    assert one_event(track(event="e", extra=nested(32)))
    assert (
        track_error(event="e", extra=nested(33)) == "extra: must be nested at most 32 levels deep"
    )
    rejection = batch_rejection({"event": "e", "distinctId": "d", "extra": nested(33)})
    assert rejection.field == "events[0].extra"


# --- time -----------------------------------------------------------------------------------


def test_time_sets_occurred_at() -> None:
    event = one_event(track(event="e", time=NOW_MS - 3_600_000 + 0.5))
    assert event.occurred_at.ToDatetime(UTC) == NOW - timedelta(hours=1) + timedelta(
        microseconds=500
    )


def test_time_in_the_future_is_refused_beyond_clock_skew() -> None:
    skew = 5 * 60 * 1000
    assert one_event(track(event="e", time=NOW_MS + skew))
    assert track_error(event="e", time=NOW_MS + skew + 1) == "time: must not be in the future"
    rejection = batch_rejection({"event": "e", "distinctId": "d", "time": NOW_MS + 86_400_000})
    assert rejection.message == "events[0].time: must not be in the future"


def test_old_times_are_accepted_for_backfills() -> None:
    year_2000 = 946_684_800_000
    assert one_event(track(event="e", time=year_2000)).occurred_at.seconds == year_2000 // 1000
    assert track_error(event="e", time=year_2000 - 1).startswith("time: must be at least")
    assert track_error(event="e", time="2024-03-01") == "time: must be a number"
    assert track_error(event="e", time=True) == "time: must be a number"


# --- lossless mapping -----------------------------------------------------------------------


def test_every_field_has_a_home() -> None:
    event = one_event(
        track(
            event="Order",
            distinctId="d-1",
            userId="u-1",
            externalId="x-1",
            email="a@example.com",
            eventProperties={"total": 9.5},
            userProperties={"plan": "pro"},
            defaultProperties={"$os": "iOS", "nested": {"a": [1, None]}},
            identityContext={"ip": "203.0.113.7", "userAgent": "UA/1", "fbp": "fb.1"},
            campaign={"id": 7},
            flag=None,
        )
    )
    identity = event.identity
    assert (identity.distinct_id, identity.user_id, identity.external_id, identity.email) == (
        "d-1",
        "u-1",
        "x-1",
        "a@example.com",
    )
    assert (event.device.ip, event.device.user_agent) == ("203.0.113.7", "UA/1")
    assert dict(event.properties) == {"total": 9.5}
    assert dict(event.user_properties) == {"plan": "pro"}
    extras = MessageToDict(event.extras)
    assert extras == {
        "defaultProperties": {"$os": "iOS", "nested": {"a": [1, None]}},
        "identityContext": {"fbp": "fb.1"},
        "campaign": {"id": 7},
        "flag": None,
    }
    assert "token" not in extras


def test_batch_row_token_and_envelope_keys() -> None:
    translation = batch({"event": "e", "distinctId": "d", "token": "row-secret"}, source="replay")
    extras = MessageToDict(one_event(translation).extras)
    assert extras == {"$batch": {"source": "replay"}}


def test_properties_alias() -> None:
    event = one_event(track(event="e", properties={"a": 1}))
    assert dict(event.properties) == {"a": 1}
    assert not event.HasField("extras")
    both = one_event(track(event="e", eventProperties={"a": 1}, properties={"b": 2}))
    assert dict(both.properties) == {"a": 1}
    assert MessageToDict(both.extras) == {"properties": {"b": 2}}
    too_many = {f"k{i}": i for i in range(201)}
    assert track_error(event="e", properties=too_many) == "properties: must have at most 200 keys"


# --- determinism ----------------------------------------------------------------------------


def test_translation_is_deterministic() -> None:
    body = {"token": TOKEN, "event": "e", "eventProperties": {"b": 1, "a": [1, {"c": 2}]}}
    first = ADAPTER.translate(request(TRACK, body))
    second = ADAPTER.translate(request(TRACK, body))
    assert [e.SerializeToString(deterministic=True) for e in first.events] == [
        e.SerializeToString(deterministic=True) for e in second.events
    ]
    assert first.credential == second.credential
    other = ADAPTER.translate(request(TRACK, body, request_id="req-2"))
    assert other.events[0].id != first.events[0].id
    keyed = [request(TRACK, body, request_id=r, idempotency_key="k") for r in ("a", "b")]
    assert len({one_event(ADAPTER.translate(r)).id for r in keyed}) == 1


# --- render ---------------------------------------------------------------------------------


def outcomes(translation: Translation, *statuses: Status, code: str = "") -> list[Outcome]:
    return [
        Outcome(status=s, event_id=e.id, code=code, message="nope" if code else "")
        for s, e in zip(statuses, translation.events, strict=True)
    ]


def test_render_track() -> None:
    translation = track(event="e")
    req = request(TRACK, {})
    for status in (Status.ACCEPTED, Status.DUPLICATE):
        response = ADAPTER.render(
            req, translation, result_of(translation, outcomes(translation, status))
        )
        assert (response.status, body_of(response)) == (200, {"success": True})
    rejected = ADAPTER.render(
        req, translation, result_of(translation, outcomes(translation, Status.REJECTED, code="x"))
    )
    assert (rejected.status, body_of(rejected)) == (400, {"success": False, "error": "nope"})


def test_render_batch_all_accepted_with_duplicate() -> None:
    translation = batch({"event": "a", "distinctId": "1"}, {"event": "b", "distinctId": "2"})
    response = ADAPTER.render(
        request(BATCH, {}), translation, outcomes(translation, Status.ACCEPTED, Status.DUPLICATE)
    )
    assert response.status == 200
    assert body_of(response) == {
        "success": True,
        "accepted": 2,
        "failed": 0,
        "results": [{"index": 0, "success": True}, {"index": 1, "success": True}],
    }


def test_render_batch_partial() -> None:
    translation = batch({"event": "a"}, {"event": "b", "distinctId": "2"})
    response = ADAPTER.render(
        request(BATCH, {}),
        translation,
        result_of(translation, outcomes(translation, Status.ACCEPTED)),
    )
    assert response.status == 207
    body = body_of(response)
    assert (body["success"], body["accepted"], body["failed"]) == (False, 1, 1)
    assert body["results"][0] == {
        "index": 0,
        "success": False,
        "code": "invalid_event",
        "message": "events[0].distinctId: required",
    }
    assert "error" not in body


def test_render_batch_all_invalid_is_400_with_results() -> None:
    translation = batch({"event": "a"}, "x")
    response = ADAPTER.render(request(BATCH, {}), translation, result_of(translation))
    body = body_of(response)
    assert response.status == 400
    assert (body["success"], body["accepted"], body["failed"]) == (False, 0, 2)
    assert [r["index"] for r in body["results"]] == [0, 1]
    assert body["error"]


def test_render_batch_ingestor_rejections() -> None:
    translation = batch({"event": "a", "distinctId": "1"}, {"event": "b", "distinctId": "2"})
    req = request(BATCH, {})
    queued = ADAPTER.render(
        req,
        translation,
        result_of(
            translation,
            outcomes(translation, Status.REJECTED, Status.REJECTED, code="queue_failed"),
        ),
    )
    assert queued.status == 500
    assert body_of(queued)["retryable"] is True
    assert body_of(queued)["results"][0]["code"] == "queue_failed"
    other = ADAPTER.render(
        req,
        translation,
        result_of(translation, outcomes(translation, Status.ACCEPTED, Status.REJECTED, code="odd")),
    )
    assert other.status == 207
    assert body_of(other)["results"][1] == {
        "index": 1,
        "success": False,
        "code": "invalid_event",
        "message": "nope",
    }


ERRORS: list[tuple[GatewayError, int, dict[str, Any]]] = [
    (InvalidRequest("bad"), 400, {"error": "bad"}),
    (MalformedBody("Malformed JSON"), 400, {"error": "Malformed JSON"}),
    (ValidationFailed("invalid"), 400, {"error": "invalid"}),
    (UnsupportedMediaType("xml"), 415, {"error": "xml"}),
    (PayloadTooLarge("too big", limit=1000), 413, {"error": "too big", "limit": 1000}),
    (MissingCredential("no key"), 401, {"error": "Missing token"}),
    (InvalidCredential("unknown key"), 401, {"error": "Invalid token"}),
    (UnknownProject("no project"), 401, {"error": "Invalid token"}),
    (PermissionDenied("denied"), 403, {"error": "denied"}),
    (MissingScope("scope", scope="events:write"), 403, {"error": "scope"}),
    (ProjectMismatch("other"), 403, {"error": "other"}),
    (OriginNotAllowed("origin"), 403, {"error": "origin"}),
    (RouteNotFound("Not found"), 404, {"error": "Not found"}),
    (
        MethodNotAllowed("Method not allowed", allowed=("POST",)),
        405,
        {"error": "Method not allowed"},
    ),
    (IdempotencyKeyReused("reused"), 422, {"error": "reused"}),
    (
        IdempotencyInFlight("in flight", retry_after=1.5),
        409,
        {"error": "in flight", "retryable": True},
    ),
    (
        RateLimited("slow", limit=10, window=1.0, retry_after=3),
        429,
        {"error": "slow", "retryable": True},
    ),
    (Overloaded("busy"), 503, {"error": "busy", "retryable": True}),
    (StorageUnavailable("db down"), 500, {"error": "db down", "retryable": True}),
]


@pytest.mark.parametrize(
    ("error", "status", "body"), ERRORS, ids=[type(e[0]).__name__ for e in ERRORS]
)
def test_render_error(error: GatewayError, status: int, body: dict[str, Any]) -> None:
    for req in (None, request(BATCH, {})):
        response = ADAPTER.render_error(req, error)
        assert response.status == status
        assert body_of(response) == {"success": False, **body}
        assert response.content_type == "application/json"


def test_render_error_headers() -> None:
    limited = RateLimited("slow", limit=10, window=1.0, retry_after=2.2)
    assert ADAPTER.render_error(None, limited).headers == {"Retry-After": "3"}
    # A 503 that does not say when tells the SDK to back off a second (every dialect alike).
    assert ADAPTER.render_error(None, Overloaded("busy")).headers == {"Retry-After": "1"}
    not_allowed = MethodNotAllowed("no", allowed=("POST",))
    assert ADAPTER.render_error(None, not_allowed).headers == {"Allow": "POST"}
