"""The VibeFollow adapter: validation, timestamps, all-or-nothing batch, per-row bulk, envelope."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import RawRequest, Rejection, Translation
from adapters.vibefollow import VibeFollow
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

KEY = "sk_live_test"
ADAPTER = VibeFollow()


def raw(
    body: Any,
    *,
    route: str = "batch",
    key: str | None = KEY,
    idempotency_key: str | None = "idem-1",
    media_type: str = "application/json",
    request_id: str = "req-1",
    adapter: VibeFollow = ADAPTER,
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
    return {"external_user_id": "usr_42", "name": "user_signed_up", **fields}


def rendered(error: GatewayError) -> tuple[int, dict[str, Any], dict[str, str]]:
    return rendered_with(ADAPTER, raw({}), error)


def test_dialect_surface() -> None:
    assert ADAPTER.name == "vibefollow"
    assert [(r.method, r.path, r.name, r.max_body_bytes) for r in ADAPTER.routes] == [
        ("POST", "/api/v1/events", "single", None),
        ("POST", "/api/v1/events/batch", "batch", 5_000_000),
        ("POST", "/api/v1/events/bulk", "bulk", None),
        ("POST", "/api/v1/users", "users", None),
        ("POST", "/api/v1/users/bulk", "users_bulk", None),
    ]
    assert [r.name for r in ADAPTER.routes if r.per_item] == ["bulk", "users_bulk"]
    assert tuple(ADAPTER.prefixes) == ("/api/v1/events", "/api/v1/users")


def test_seed_event_maps_every_field() -> None:
    body = event(properties={"plan": "trial"}, timestamp="2024-02-29T18:30:00.250+01:00")
    translation = ADAPTER.translate(raw(body, route="single"))
    assert translation.credential == ApiKey(KEY)
    [e] = translation.events
    assert (e.dialect, e.type, e.name) == (
        "vibefollow",
        EventType.EVENT_TYPE_TRACK,
        "user_signed_up",
    )
    assert e.identity.external_id == "usr_42"
    assert MessageToDict(e.properties) == {"plan": "trial"}
    assert e.occurred_at.ToDatetime(UTC) == datetime(2024, 2, 29, 17, 30, 0, 250_000, tzinfo=UTC)
    assert e.received_at.ToDatetime(UTC) == RECEIVED
    assert e.project_id == ""
    assert not e.HasField("extras")


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (None, RECEIVED),
        ("2024-02-29T18:30:00Z", datetime(2024, 2, 29, 18, 30, tzinfo=UTC)),
        ("2024-02-29T18:30:00", datetime(2024, 2, 29, 18, 30, tzinfo=UTC)),
        (1709251200000, datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_timestamp_is_iso_8601_or_epoch_ms(timestamp: Any, expected: datetime) -> None:
    body = event() if timestamp is None else event(timestamp=timestamp)
    [e] = ADAPTER.translate(raw(body, route="single")).events
    assert e.occurred_at.ToDatetime(UTC) == expected


def test_client_ids_and_unknown_keys_are_kept_in_extras() -> None:
    body = event(id="c-1", event_id="c-2", context={"app": {"build": 7}})
    [e] = ADAPTER.translate(raw(body, route="single")).events
    assert e.id not in {"c-1", "c-2"}
    assert MessageToDict(e.extras) == {
        "id": "c-1",
        "event_id": "c-2",
        "context": {"app": {"build": 7.0}},
    }


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"name": "x"}, "external_user_id"),
        (event(external_user_id=""), "external_user_id"),
        (event(external_user_id=42), "external_user_id"),
        (event(external_user_id="u" * 257), "external_user_id"),
        (event(name=None), "name"),
        (event(name=""), "name"),
        (event(name="n" * 257), "name"),
        (event(properties=[1]), "properties"),
        (event(properties={f"k{i}": i for i in range(101)}), "properties"),
        (event(properties={"blob": "x" * (1024 * 1024)}), "properties"),
        (event(timestamp="yesterday"), "timestamp"),
        (event(timestamp=True), "timestamp"),
        (event(timestamp=5), "timestamp"),
    ],
)
def test_invalid_event(row: dict[str, Any], field: str) -> None:
    single = failure(ADAPTER.translate(raw(row, route="single")))
    assert isinstance(single, ValidationFailed)
    assert single.field == field
    batch = failure(ADAPTER.translate(raw({"events": [event(), event(), event(), row]})))
    assert batch.field == f"events[3].{field}"
    status, body, _ = rendered(batch)
    assert status == 422
    assert body == {
        "errors": [{"code": "validation_failed", "message": batch.message, "field": batch.field}]
    }


def test_limits_at_the_edge_are_accepted() -> None:
    row = event(external_user_id="u" * 256, properties={f"k{i}": i for i in range(100)})
    assert len(ADAPTER.translate(raw({"events": [row] * 500})).events) == 500


@pytest.mark.parametrize(
    ("request_", "status", "code", "field"),
    [
        (raw({"events": [event()] * 501}), 413, "payload_too_large", "events"),
        (raw({"events": [event()] * 1001}, route="bulk"), 413, "payload_too_large", "events"),
        (raw({"rows": []}), 422, "validation_failed", "events"),
        (raw({"events": event()}), 422, "validation_failed", "events"),
        (raw({"events": []}), 422, "validation_failed", "events"),
        (raw({"events": []}, route="bulk"), 422, "validation_failed", "events"),
        (raw({"events": ["x"]}), 422, "validation_failed", "events[0]"),
        (raw([event()], route="single"), 400, "invalid_request", None),
        (raw(b'{"events": ['), 400, "invalid_json", None),
        (raw(b"  "), 400, "invalid_json", None),
        (
            raw(b"external_user_id=u", media_type="application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
            None,
        ),
    ],
)
def test_request_level_errors(
    request_: RawRequest, status: int, code: str, field: str | None
) -> None:
    error = failure(ADAPTER.translate(request_))
    got_status, body, _ = rendered(error)
    assert (got_status, body["errors"][0]["code"], body["errors"][0].get("field")) == (
        status,
        code,
        field,
    )


def test_limits_are_configurable() -> None:
    small = VibeFollow(max_batch_events=2, max_bulk_events=3)
    error = failure(small.translate(raw({"events": [event()] * 3}, adapter=small)))
    assert isinstance(error, PayloadTooLarge) and error.limit == 2
    assert (
        len(small.translate(raw({"events": [event()] * 3}, route="bulk", adapter=small)).items) == 3
    )


def test_text_plain_json_is_accepted() -> None:
    translation = ADAPTER.translate(raw(event(), route="single", media_type="text/plain"))
    assert len(translation.events) == 1


@pytest.mark.parametrize("header", ["", "Token sk_live_x", "Bearer "])
def test_missing_or_malformed_authorization_reads_nothing(header: str) -> None:
    request = dataclasses.replace(raw(b"{", key=None), headers={"authorization": header})
    assert ADAPTER.translate(request) == Translation()


def test_any_bearer_key_is_a_credential() -> None:
    assert ADAPTER.translate(raw(event(), key="egw_other", route="single")).credential == ApiKey(
        "egw_other"
    )


def test_translation_is_deterministic_and_ids_follow_the_idempotency_key() -> None:
    body = {"events": [event(), event(name="trial_started")]}
    first = ADAPTER.translate(raw(body, idempotency_key="k-1", request_id="a"))
    assert first == ADAPTER.translate(raw(body, idempotency_key="k-1", request_id="b"))
    ids = [e.id for e in first.events]
    assert len(set(ids)) == 2
    assert {e.id for e in ADAPTER.translate(raw(body, idempotency_key="k-2")).events}.isdisjoint(
        ids
    )
    bulk = ADAPTER.translate(raw(body, route="bulk", idempotency_key="k-1")).events
    assert {e.id for e in bulk}.isdisjoint(ids)  # ids are per route, too


def test_bulk_rejects_rows_one_by_one() -> None:
    rows = [event(), event(name=""), "junk", event(external_user_id=7)]
    translation = ADAPTER.translate(raw({"events": [*rows, event()]}, route="bulk"))
    assert translation.failure is None
    kinds = [type(item).__name__ for item in translation.items]
    assert kinds == ["Event", "Rejection", "Rejection", "Rejection", "Event"]
    rejections = [item for item in translation.items if isinstance(item, Rejection)]
    assert [(r.index, r.code, r.field) for r in rejections] == [
        (1, "validation_failed", "name"),
        (2, "validation_failed", None),
        (3, "validation_failed", "external_user_id"),
    ]
    [first, last] = translation.events
    outcomes = [
        Outcome(status=Status.DUPLICATE, event_id=first.id),
        Outcome(status=Status.REJECTED, event_id=last.id, code="too_old", message="old"),
    ]
    response = ADAPTER.render(raw({}, route="bulk"), translation, result_of(translation, outcomes))
    assert response.status == 200
    assert orjson.loads(response.body) == {
        "data": {
            "accepted": 1,
            "rejected": 4,
            "errors": [
                {
                    "index": 1,
                    "code": "validation_failed",
                    "message": "name is required",
                    "field": "name",
                },
                {"index": 2, "code": "validation_failed", "message": "event must be an object"},
                {
                    "index": 3,
                    "code": "validation_failed",
                    "message": "external_user_id must be a string",
                    "field": "external_user_id",
                },
                {"index": 4, "code": "too_old", "message": "old"},
            ],
        },
        "meta": {"received": 5},
    }


def test_render_single_and_batch_accept_with_202() -> None:
    for route in ("single", "batch"):
        body = event() if route == "single" else {"events": [event(), event()]}
        request = raw(body, route=route)
        translation = ADAPTER.translate(request)
        outcomes = [Outcome(status=Status.DUPLICATE, event_id=e.id) for e in translation.events]
        response = ADAPTER.render(request, translation, result_of(translation, outcomes))
        assert (response.status, orjson.loads(response.body)) == (202, {"data": {"accepted": True}})


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (MalformedBody("Malformed JSON"), 400, "invalid_json"),
        (InvalidRequest("bad"), 400, "invalid_request"),
        (ValidationFailed("bad", field="events"), 422, "validation_failed"),
        (MissingCredential("Missing credentials"), 401, "auth_required"),
        (InvalidCredential("Invalid API key"), 401, "invalid_api_key"),
        (InvalidCredential("API key has been revoked"), 401, "invalid_api_key"),
        (UnknownProject("unknown"), 401, "invalid_api_key"),
        (PermissionDenied("no"), 403, "forbidden"),
        (MissingScope("no", scope="track:events"), 403, "forbidden"),
        (ProjectMismatch("no"), 403, "forbidden"),
        (RouteNotFound("No route"), 404, "not_found"),
        (MethodNotAllowed("GET", allowed=("POST",)), 405, "method_not_allowed"),
        (IdempotencyInFlight("busy"), 409, "idempotency_in_flight"),
        (PayloadTooLarge("big", limit=5_000_000), 413, "payload_too_large"),
        (UnsupportedMediaType("xml"), 415, "unsupported_media_type"),
        (IdempotencyKeyReused("reused"), 422, "idempotency_key_reuse"),
        (RateLimited("slow", limit=10, window=1.0, retry_after=0.2), 429, "rate_limited"),
        (Overloaded("full"), 503, "server_error"),
        (StorageUnavailable("down"), 503, "server_error"),
        (GatewayError("boom"), 500, "server_error"),
    ],
)
def test_error_envelope(error: GatewayError, status: int, code: str) -> None:
    got_status, body, _ = rendered(error)
    assert got_status == status
    [item] = body["errors"]
    assert item["code"] == code
    assert set(item) <= {"code", "message", "field"}


def test_error_headers_and_hidden_internals() -> None:
    assert rendered(RateLimited("slow", limit=10, window=1.0, retry_after=0.2))[2] == {
        "Retry-After": "1"
    }
    assert rendered(Overloaded("full", retry_after=2.0))[2]["Retry-After"] == "2"
    assert rendered(StorageUnavailable("down"))[2]["Retry-After"] == "1"
    assert rendered(IdempotencyInFlight("busy"))[2] == {}
    assert rendered(GatewayError("secret"))[1] == {
        "errors": [{"code": "server_error", "message": "Internal server error"}]
    }


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
    st.sampled_from(["external_user_id", "name", "properties", "timestamp", "id", "x"]),
    st.text(max_size=3) | st.integers(0, 2**45) | JSON,
)


@settings(max_examples=200, deadline=None)
@given(JSON | st.fixed_dictionaries({"events": st.lists(ROW | JSON, max_size=3)}) | ROW)
def test_translation_never_raises_and_is_deterministic(body: Any) -> None:
    for route in ("single", "batch", "bulk"):
        translation = ADAPTER.translate(raw(body, route=route))
        assert (translation.failure is None) == bool(translation.items)
        assert summary(translation) == summary(ADAPTER.translate(raw(body, route=route)))
