"""The Appizer users endpoints: ``POST /v1/users`` (create or update: an identify event) and
``POST /v1/users/aliases`` (an alias event), their answers and their 400s."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.appizer import Appizer
from adapters.base import RawRequest, Translation
from gateway.errors import ValidationFailed
from gateway.model import ApiKey
from gateway.pb.event_pb2 import EventType
from tests.adapters.helpers import bearer, failure, raw_request, result_of, route_named
from tests.adapters.helpers import rendered as rendered_with

KEY = "appizer_test_key"
ADAPTER = Appizer()
# The documented examples.
USER = {
    "user_id": "user_123",
    "email": "user@example.com",
    "phone": "+1234567890",
    "properties": {"name": "John Doe", "plan": "premium", "signup_date": "2023-06-15"},
    "origin": {"channel": "ios-app", "campaign": "spring-launch", "label": "Onboarding Flow"},
}
ALIAS = {"user_id": "user_123", "alias_id": "legacy_999"}


def raw(body: Any, *, route: str = "identify", idempotency_key: str | None = "k-1") -> RawRequest:
    return raw_request(
        route_named(ADAPTER, route), body, headers=bearer(KEY), idempotency_key=idempotency_key
    )


def answer(request: RawRequest) -> tuple[int, Any]:
    translation = ADAPTER.translate(request)
    if translation.failure is not None:
        status, body, _ = rendered_with(ADAPTER, request, translation.failure)
        return status, body
    response = ADAPTER.render(request, translation, result_of(translation))
    return response.status, orjson.loads(response.body)


def test_the_documented_user_is_an_identify_event() -> None:
    translation = ADAPTER.translate(raw(USER))
    assert translation.credential == ApiKey(KEY)
    [e] = translation.events
    assert (e.dialect, e.type, e.name) == ("appizer", EventType.EVENT_TYPE_IDENTIFY, "$identify")
    assert (e.identity.user_id, e.identity.email) == ("user_123", "user@example.com")
    assert MessageToDict(e.user_properties) == USER["properties"]
    assert MessageToDict(e.extras) == {"phone": "+1234567890", "origin": USER["origin"]}
    assert not e.HasField("properties")
    assert e.occurred_at == e.received_at
    assert answer(raw(USER)) == (
        200,
        {
            "success": True,
            "user_id": e.id,
            "external_id": "user_123",
            "message": "User created/updated successfully",
        },
    )


def test_the_documented_alias_is_an_alias_event() -> None:
    [e] = ADAPTER.translate(raw(ALIAS, route="alias")).events
    assert (e.dialect, e.type, e.name) == ("appizer", EventType.EVENT_TYPE_ALIAS, "$alias")
    assert (e.identity.user_id, e.identity.previous_id) == ("user_123", "legacy_999")
    assert not e.HasField("extras")
    assert answer(raw(ALIAS, route="alias")) == (
        200,
        {
            "success": True,
            "alias_id": "legacy_999",
            "user_id": "user_123",
            "message": "Alias created",
        },
    )


def test_primary_user_id_may_stand_for_user_id() -> None:
    primary = "0f8fad5b-d9cb-469f-a165-70867728950e"
    body = {"primary_user_id": primary, "alias_id": "legacy_999"}
    [e] = ADAPTER.translate(raw(body, route="alias")).events
    assert (e.identity.user_id, e.identity.previous_id) == ("", "legacy_999")
    assert MessageToDict(e.extras) == {"primary_user_id": primary}
    assert answer(raw(body, route="alias"))[1]["user_id"] == primary
    both = {**ALIAS, "primary_user_id": primary}
    [e] = ADAPTER.translate(raw(both, route="alias")).events
    assert e.identity.user_id == "user_123"
    assert MessageToDict(e.extras) == {"primary_user_id": primary}


def test_unknown_keys_are_kept_in_extras() -> None:
    [e] = ADAPTER.translate(raw({**USER, "timestamp": 5, "traits": {"a": 1}})).events
    assert MessageToDict(e.extras) == {
        "phone": "+1234567890",
        "origin": USER["origin"],
        "timestamp": 5.0,
        "traits": {"a": 1.0},
    }
    [e] = ADAPTER.translate(raw({**ALIAS, "note": "migration"}, route="alias")).events
    assert MessageToDict(e.extras) == {"note": "migration"}


@pytest.mark.parametrize(
    ("route", "body", "field", "code"),
    [
        ("identify", {"email": "a@b.co"}, "user_id", "MISSING_FIELD"),
        ("identify", {**USER, "user_id": ""}, "user_id", "MISSING_FIELD"),
        ("identify", {**USER, "user_id": 7}, "user_id", "INVALID_TYPE"),
        ("identify", {**USER, "user_id": "u" * 257}, "user_id", "INVALID_REQUEST"),
        ("identify", {**USER, "email": True}, "email", "INVALID_TYPE"),
        ("identify", {**USER, "phone": 1234567890}, "phone", "INVALID_TYPE"),
        ("identify", {**USER, "properties": "pro"}, "properties", "INVALID_TYPE"),
        ("identify", {**USER, "properties": {"x": "y" * 32768}}, "properties", "INVALID_REQUEST"),
        ("identify", {**USER, "origin": ["ios-app"]}, "origin", "INVALID_TYPE"),
        ("alias", {"alias_id": "legacy_999"}, "user_id", "MISSING_FIELD"),
        ("alias", {"user_id": "user_123"}, "alias_id", "MISSING_FIELD"),
        ("alias", {**ALIAS, "alias_id": ""}, "alias_id", "MISSING_FIELD"),
        ("alias", {**ALIAS, "alias_id": 999}, "alias_id", "INVALID_TYPE"),
        ("alias", {**ALIAS, "alias_id": "a" * 257}, "alias_id", "INVALID_REQUEST"),
        ("alias", {"primary_user_id": 5, "alias_id": "a"}, "primary_user_id", "INVALID_TYPE"),
    ],
)
def test_an_invalid_body_is_400_naming_the_field(
    route: str, body: dict[str, Any], field: str, code: str
) -> None:
    error = failure(ADAPTER.translate(raw(body, route=route)))
    assert isinstance(error, ValidationFailed)
    status, answer_ = answer(raw(body, route=route))
    assert (status, answer_["code"], answer_["details"]) == (400, code, {"field": field})
    assert answer_["error"] == "Bad Request" and field in answer_["message"]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("identify", {"userId": "user_123", "traits": {"plan": "pro"}}),
        ("alias", {"userId": "user_123", "previousId": "anon_1"}),
    ],
)
def test_the_sdk_call_shape_is_no_wire_format(route: str, body: dict[str, Any]) -> None:
    status, answer_ = answer(raw(body, route=route))
    assert (status, answer_["code"], answer_["details"]) == (
        400,
        "MISSING_FIELD",
        {"field": "user_id"},
    )


@pytest.mark.parametrize("route", ["identify", "alias"])
def test_a_body_that_is_not_an_object_is_invalid_request(route: str) -> None:
    status, body = answer(raw([ALIAS], route=route))
    assert (status, body["code"]) == (400, "INVALID_REQUEST")
    status, body = answer(raw(b"{", route=route))
    assert (status, body["code"]) == (400, "INVALID_REQUEST")


def test_ids_follow_the_idempotency_key_and_the_route() -> None:
    [first] = ADAPTER.translate(raw(ALIAS, route="alias", idempotency_key="k-1")).events
    [again] = ADAPTER.translate(raw(ALIAS, route="alias", idempotency_key="k-1")).events
    [other] = ADAPTER.translate(raw(ALIAS, route="alias", idempotency_key="k-2")).events
    [user] = ADAPTER.translate(raw(USER, idempotency_key="k-1")).events
    assert first.id == again.id and len({first.id, other.id, user.id}) == 3


def summary(translation: Translation) -> tuple[object, ...]:
    error = translation.failure
    problem = None if error is None else (type(error), error.message, error.field)
    return (translation.credential, list(translation.items), problem)


BODY = st.dictionaries(
    st.sampled_from(
        ["user_id", "primary_user_id", "alias_id", "email", "phone", "properties", "origin", "x"]
    ),
    st.text(max_size=3) | st.integers() | st.none() | st.dictionaries(st.text(), st.integers()),
)


@settings(max_examples=200, deadline=None)
@given(BODY)
def test_translation_never_raises_and_is_deterministic(body: Any) -> None:
    for route in ("identify", "alias"):
        translation = ADAPTER.translate(raw(body, route=route))
        assert (translation.failure is None) == bool(translation.items)
        assert summary(translation) == summary(ADAPTER.translate(raw(body, route=route)))
