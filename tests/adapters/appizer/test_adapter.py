"""The Appizer adapter: field validation, lossless extras, all-or-nothing batches, errors."""

from __future__ import annotations

import dataclasses
from datetime import UTC
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.allornothing import InvalidEvent
from adapters.appizer import Appizer
from adapters.base import RawRequest, Translation
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
from gateway.pb.event_pb2 import EventType
from tests.adapters.helpers import (
    RECEIVED,
    bearer,
    failure,
    raw_request,
    result_of,
    route_named,
)
from tests.adapters.helpers import rendered as rendered_with

KEY = "appizer_test_key"
ADAPTER = Appizer()


def raw(
    body: Any,
    *,
    route: str = "batch",
    key: str | None = KEY,
    idempotency_key: str | None = None,
    media_type: str = "application/json",
    request_id: str = "req-1",
    adapter: Appizer = ADAPTER,
) -> RawRequest:
    return raw_request(
        route_named(adapter, route),
        body,
        headers=bearer(key),
        media_type=media_type,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


def event(**fields: Any) -> dict[str, Any]:
    return {"event_name": "page_view", "user_id": "user_123", **fields}


def rendered(error: GatewayError) -> tuple[int, dict[str, Any], dict[str, str]]:
    return rendered_with(ADAPTER, raw({}), error)


def test_dialect_surface() -> None:
    assert ADAPTER.name == "appizer"
    assert [(r.method, r.path, r.name) for r in ADAPTER.routes] == [
        ("POST", "/v1/events", "single"),
        ("POST", "/v1/events/batch", "batch"),
        ("POST", "/v1/users", "identify"),
        ("POST", "/v1/users/aliases", "alias"),
    ]
    assert tuple(ADAPTER.prefixes) == ("/v1",)
    assert tuple(ADAPTER.cors_allow_headers) == ()


def test_seed_event_maps_every_field() -> None:
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    body = {"events": [event(properties={"page": "/dashboard"}, ip="192.168.1.1", ua=ua)]}
    translation = ADAPTER.translate(raw(body))
    assert translation.credential == ApiKey(KEY)
    assert translation.failure is None
    [e] = translation.events
    assert (e.dialect, e.type, e.name) == ("appizer", EventType.EVENT_TYPE_TRACK, "page_view")
    assert e.identity.user_id == "user_123"
    assert MessageToDict(e.properties) == {"page": "/dashboard"}
    assert (e.device.ip, e.device.user_agent) == ("192.168.1.1", ua)
    assert e.occurred_at.ToDatetime(UTC) == RECEIVED == e.received_at.ToDatetime(UTC)
    assert e.project_id == ""  # the gateway sets it from the credential
    assert not e.HasField("extras")


def test_unknown_keys_timestamp_and_event_id_are_kept_in_extras() -> None:
    body = event(timestamp="2024-02-29T10:00:00Z", event_id="evt_1", app={"v": [1, None, True]})
    [e] = ADAPTER.translate(raw(body, route="single")).events
    assert e.occurred_at.ToDatetime(UTC) == RECEIVED  # not interpreted
    assert e.id != "evt_1"
    assert MessageToDict(e.extras) == {
        "timestamp": "2024-02-29T10:00:00Z",
        "event_id": "evt_1",
        "app": {"v": [1.0, None, True]},
    }


@pytest.mark.parametrize(
    ("row", "field", "code"),
    [
        ({"user_id": "u"}, "events[1].event_name", "MISSING_FIELD"),
        ({"event_name": "x"}, "events[1].user_id", "MISSING_FIELD"),
        (event(user_id=None), "events[1].user_id", "MISSING_FIELD"),
        (event(user_id=""), "events[1].user_id", "MISSING_FIELD"),
        (event(user_id=123), "events[1].user_id", "INVALID_TYPE"),
        (event(event_name=["a"]), "events[1].event_name", "INVALID_TYPE"),
        (event(properties="plan=pro"), "events[1].properties", "INVALID_TYPE"),
        (event(ip=1), "events[1].ip", "INVALID_TYPE"),
        (event(ua=False), "events[1].ua", "INVALID_TYPE"),
        ("not an object", "events[1]", "INVALID_TYPE"),
        (event(user_id="u" * 257), "events[1].user_id", "INVALID_REQUEST"),
        (event(event_name="n" * 257), "events[1].event_name", "INVALID_REQUEST"),
        (event(properties={"blob": "x" * 32 * 1024}), "events[1].properties", "INVALID_REQUEST"),
    ],
)
def test_invalid_event_rejects_the_whole_batch(row: Any, field: str, code: str) -> None:
    translation = ADAPTER.translate(raw({"events": [event(), row, event()]}))
    error = failure(translation)
    assert isinstance(error, ValidationFailed)
    assert error.field == field
    assert translation.credential == ApiKey(KEY)  # authentication still comes first
    status, body, _ = rendered(error)
    assert status == 400
    assert body == {
        "error": "Bad Request",
        "message": error.message,
        "code": code,
        "details": {"field": field},
    }


def test_single_event_errors_name_the_bare_field() -> None:
    error = failure(ADAPTER.translate(raw({"event_name": "x"}, route="single")))
    assert error.field == "user_id"
    assert rendered(error)[1]["code"] == "MISSING_FIELD"


def test_limits_at_the_edge_are_accepted() -> None:
    row = event(user_id="u" * 256, event_name="n" * 256, properties={"b": "x" * 32_000})
    assert len(ADAPTER.translate(raw({"events": [row]})).events) == 1
    full = ADAPTER.translate(raw({"events": [event()] * 100}))
    assert len(full.events) == 100


@pytest.mark.parametrize(
    ("request_", "error_type"),
    [
        (raw({"batch": []}), InvalidRequest),
        (raw({"events": {"event_name": "x"}}), InvalidRequest),
        (raw({"events": []}), InvalidRequest),
        (raw({"events": [event()] * 101}), InvalidRequest),
        (raw([event()]), InvalidRequest),
        (raw([event()], route="single"), InvalidRequest),
        (raw(b'{"events": ['), MalformedBody),
        (raw(b""), MalformedBody),
        (raw({"events": [event()]}, media_type="application/xml"), UnsupportedMediaType),
    ],
)
def test_request_level_errors(request_: RawRequest, error_type: type[GatewayError]) -> None:
    error = failure(ADAPTER.translate(request_))
    assert type(error) is error_type
    status, body, _ = rendered(error)
    expected = (415, "UNSUPPORTED_MEDIA_TYPE") if status == 415 else (400, "INVALID_REQUEST")
    assert (status, body["code"]) == expected


def test_batch_limit_is_configurable() -> None:
    small = Appizer(max_batch_events=2)
    error = failure(small.translate(raw({"events": [event()] * 3}, adapter=small)))
    assert "maximum 2" in error.message


def test_text_plain_json_is_accepted() -> None:
    translation = ADAPTER.translate(raw({"events": [event()]}, media_type="text/plain"))
    assert len(translation.events) == 1


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer", "Bearer   "])
def test_missing_or_malformed_authorization_reads_nothing(header: str) -> None:
    request = raw({"events": "bad"}, key=None)
    request = dataclasses.replace(request, headers={"authorization": header})
    assert ADAPTER.translate(request) == Translation()


def test_bearer_scheme_is_case_insensitive() -> None:
    request = raw({"events": [event()]})
    request = dataclasses.replace(request, headers={"authorization": "bearer  k1 "})
    assert ADAPTER.translate(request).credential == ApiKey("k1")


def test_translation_is_deterministic_and_ids_follow_the_idempotency_key() -> None:
    body = {"events": [event(), event(user_id="user_2")]}
    first = ADAPTER.translate(raw(body, idempotency_key="k-1", request_id="a"))
    again = ADAPTER.translate(raw(body, idempotency_key="k-1", request_id="b"))
    assert first == again
    ids = [e.id for e in first.events]
    assert len(set(ids)) == 2
    other_key = ADAPTER.translate(raw(body, idempotency_key="k-2")).events
    assert {e.id for e in other_key}.isdisjoint(ids)
    no_key = [ADAPTER.translate(raw(body, request_id=r)).events[0].id for r in ("a", "a", "b")]
    assert no_key[0] == no_key[1] != no_key[2]


def test_render_single_and_batch() -> None:
    single = raw(event(), route="single")
    translation = ADAPTER.translate(single)
    outcome = Outcome(status=Status.ACCEPTED, event_id=translation.events[0].id)
    response = ADAPTER.render(single, translation, result_of(translation, [outcome]))
    assert (response.status, orjson.loads(response.body)) == (
        200,
        {"success": True, "event_id": outcome.event_id, "message": "Event tracked successfully"},
    )
    batch = raw({"events": [event(), event()]})
    outcomes = [
        Outcome(status=Status.ACCEPTED, event_id="a"),
        Outcome(status=Status.DUPLICATE, event_id="b"),
    ]
    translation = ADAPTER.translate(batch)
    response = ADAPTER.render(batch, translation, result_of(translation, outcomes))
    assert orjson.loads(response.body) == {
        "success": True,
        "processed_count": 2,
        "message": "Batch events tracked successfully",
    }


@pytest.mark.parametrize(
    ("error", "status", "reason", "code"),
    [
        (MalformedBody("Malformed JSON"), 400, "Bad Request", "INVALID_REQUEST"),
        (InvalidRequest("bad"), 400, "Bad Request", "INVALID_REQUEST"),
        (ValidationFailed("bad", field="events"), 400, "Bad Request", "INVALID_REQUEST"),
        (MissingCredential("Missing credentials"), 401, "Unauthorized", "MISSING_AUTH"),
        (InvalidCredential("Invalid API key"), 401, "Unauthorized", "INVALID_API_KEY"),
        (InvalidCredential("API key has been revoked"), 401, "Unauthorized", "REVOKED_API_KEY"),
        (UnknownProject("Invalid or inactive client ID"), 401, "Unauthorized", "INVALID_API_KEY"),
        (PermissionDenied("no"), 403, "Forbidden", "INSUFFICIENT_PERMISSIONS"),
        (MissingScope("no", scope="track:events"), 403, "Forbidden", "INSUFFICIENT_PERMISSIONS"),
        (ProjectMismatch("no"), 403, "Forbidden", "INSUFFICIENT_PERMISSIONS"),
        (RouteNotFound("No route"), 404, "Not Found", "NOT_FOUND"),
        (
            MethodNotAllowed("GET", allowed=("POST",)),
            405,
            "Method Not Allowed",
            "METHOD_NOT_ALLOWED",
        ),
        (IdempotencyInFlight("busy"), 409, "Conflict", "IDEMPOTENCY_IN_FLIGHT"),
        (PayloadTooLarge("big", limit=10), 413, "Payload Too Large", "PAYLOAD_TOO_LARGE"),
        (UnsupportedMediaType("xml"), 415, "Unsupported Media Type", "UNSUPPORTED_MEDIA_TYPE"),
        (IdempotencyKeyReused("reused"), 422, "Unprocessable Entity", "IDEMPOTENCY_KEY_REUSE"),
        (Overloaded("full"), 503, "Service Unavailable", "SERVICE_UNAVAILABLE"),
        (StorageUnavailable("down"), 503, "Service Unavailable", "SERVICE_UNAVAILABLE"),
        (GatewayError("boom"), 500, "Internal Server Error", "INTERNAL_ERROR"),
    ],
)
def test_error_envelope(error: GatewayError, status: int, reason: str, code: str) -> None:
    got_status, body, _ = rendered(error)
    assert (got_status, body["error"], body["code"]) == (status, reason, code)
    assert set(body) == {"error", "message", "code", "details"}


def test_rate_limited_carries_details_and_retry_after() -> None:
    status, body, headers = rendered(
        RateLimited("slow down", limit=100, window=60.0, retry_after=2.1)
    )
    assert status == 429
    assert body == {
        "error": "Too Many Requests",
        "message": "slow down",
        "code": "RATE_LIMIT_EXCEEDED",
        "details": {"limit": 100, "window": 60, "retry_after": 3},
    }
    assert headers["Retry-After"] == "3"


def test_error_details_and_headers() -> None:
    assert rendered(PayloadTooLarge("big", limit=1000))[1]["details"] == {"limit": 1000}
    assert rendered(Overloaded("full"))[2]["Retry-After"] == "1"
    assert rendered(StorageUnavailable("down", retry_after=4.5))[2]["Retry-After"] == "5"
    assert rendered(MethodNotAllowed("GET", allowed=("POST",)))[2]["Allow"] == "POST"
    assert rendered(MissingScope("no", scope="track:events"))[1]["details"] == {
        "scope": "track:events"
    }
    assert rendered(GatewayError("db password is hunter2"))[1]["message"] == "Internal server error"


def test_invalid_event_error_survives_as_validation_failed() -> None:
    error = failure(ADAPTER.translate(raw({"events": [event(user_id=None)]})))
    assert isinstance(error, InvalidEvent)
    assert (error.problem, error.http_status) == ("required", 422)  # Appizer renders it 400


def summary(translation: Translation) -> tuple[object, ...]:
    error = translation.failure
    failure = None if error is None else (type(error), error.message, error.field)
    return (translation.credential, list(translation.items), failure)


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
ROW = st.dictionaries(
    st.sampled_from(["event_name", "user_id", "properties", "ip", "ua", "timestamp", "x"]),
    st.text(max_size=3) | JSON,
)


@settings(max_examples=200, deadline=None)
@given(JSON | st.fixed_dictionaries({"events": st.lists(ROW | JSON, max_size=3)}) | ROW)
def test_translation_never_raises_and_is_deterministic(body: Any) -> None:
    for route in ("single", "batch"):
        translation = ADAPTER.translate(raw(body, route=route))
        assert (translation.failure is None) == bool(translation.items)
        assert summary(translation) == summary(ADAPTER.translate(raw(body, route=route)))
