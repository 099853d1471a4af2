"""The VibeFollow users endpoints: ``POST /api/v1/users`` and ``/api/v1/users/bulk`` as identify
events, per-record answers in bulk, the vendor's 400 for a bad ``users`` array."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import RawRequest, Rejection, Translation
from adapters.vibefollow import VibeFollow
from gateway.errors import InvalidRequest, ValidationFailed
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
    route: str = "users",
    idempotency_key: str | None = "idem-1",
    adapter: VibeFollow = ADAPTER,
) -> RawRequest:
    return raw_request(
        route_named(adapter, route),
        body,
        headers=bearer(KEY),
        idempotency_key=idempotency_key,
    )


def user(**fields: Any) -> dict[str, Any]:
    return {"external_user_id": "usr_42", **fields}


def test_the_documented_upsert_is_an_identify_event() -> None:
    traits = {"name": "Jane Doe", "plan": "trial", "signupDate": "2026-05-17T14:00:00Z"}
    translation = ADAPTER.translate(raw(user(email="jane@acme.io", traits=traits)))
    assert translation.credential == ApiKey(KEY)
    [e] = translation.events
    assert (e.dialect, e.type, e.name) == ("vibefollow", EventType.EVENT_TYPE_IDENTIFY, "$identify")
    assert (e.identity.external_id, e.identity.email) == ("usr_42", "jane@acme.io")
    assert MessageToDict(e.user_properties) == traits
    assert not e.HasField("properties") and not e.HasField("extras")
    assert e.occurred_at == e.received_at
    assert e.received_at.ToDatetime(UTC) == RECEIVED
    response = ADAPTER.render(raw({}), translation, result_of(translation))
    assert (response.status, orjson.loads(response.body)) == (202, {"data": {"accepted": True}})


def test_unknown_keys_and_a_client_time_are_kept_in_extras() -> None:
    [e] = ADAPTER.translate(raw(user(timestamp="2024-01-01T00:00:00Z", locale="fr"))).events
    assert MessageToDict(e.extras) == {"timestamp": "2024-01-01T00:00:00Z", "locale": "fr"}
    assert e.occurred_at == e.received_at


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"email": "jane@acme.io"}, "external_user_id"),
        (user(external_user_id=""), "external_user_id"),
        (user(external_user_id=42), "external_user_id"),
        (user(external_user_id="u" * 257), "external_user_id"),
        (user(email="jane"), "email"),
        (user(email="jane@acme"), "email"),
        (user(email=["jane@acme.io"]), "email"),
        (user(traits="pro"), "traits"),
        (user(traits={f"k{i}": i for i in range(101)}), "traits"),
        (user(traits={"blob": "x" * (1024 * 1024)}), "traits"),
    ],
)
def test_an_invalid_record(record: dict[str, Any], field: str) -> None:
    single = failure(ADAPTER.translate(raw(record)))
    assert isinstance(single, ValidationFailed) and single.field == field
    status, body, _ = rendered_with(ADAPTER, raw({}), single)
    assert (status, body) == (
        422,
        {"errors": [{"code": "validation_failed", "message": single.message, "field": field}]},
    )
    bulk = ADAPTER.translate(raw({"users": [user(), record]}, route="users_bulk"))
    [_, rejected] = bulk.items
    assert isinstance(rejected, Rejection)
    assert (rejected.index, rejected.code, rejected.field) == (1, "validation", field)


def test_limits_at_the_edge_are_accepted() -> None:
    record = user(external_user_id="u" * 256, traits={f"k{i}": i for i in range(100)})
    assert len(ADAPTER.translate(raw(record)).events) == 1
    bulk = ADAPTER.translate(raw({"users": [record] * 1000}, route="users_bulk"))
    assert len(bulk.events) == 1000


def test_bulk_answers_record_by_record() -> None:
    records = [user(), user(email="not-an-email"), "junk", user(external_user_id="usr_43")]
    translation = ADAPTER.translate(raw({"users": records}, route="users_bulk"))
    assert [type(item).__name__ for item in translation.items] == [
        "Event",
        "Rejection",
        "Rejection",
        "Event",
    ]
    first, last = translation.events
    assert first.id != last.id and last.identity.external_id == "usr_43"
    outcomes = [
        Outcome(status=Status.DUPLICATE, event_id=first.id),
        Outcome(status=Status.REJECTED, event_id=last.id, code="too_large", message="big"),
    ]
    response = ADAPTER.render(
        raw({}, route="users_bulk"), translation, result_of(translation, outcomes)
    )
    assert response.status == 200
    assert orjson.loads(response.body) == {
        "data": {
            "accepted": 1,
            "rejected": 3,
            "errors": [
                {
                    "index": 1,
                    "code": "validation",
                    "message": "email is not a valid email address",
                    "field": "email",
                },
                {"index": 2, "code": "validation", "message": "user must be an object"},
                {"index": 3, "code": "too_large", "message": "big"},
            ],
        },
        "meta": {"received": 4},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"records": []}, "users is required"),
        ({"users": user()}, "users must be an array"),
        ({"users": []}, "users must contain at least one record"),
        ({"users": [user()] * 1001}, "Too many users: 1001 (maximum 1000 per request)"),
    ],
)
def test_a_bad_users_array_is_400(body: dict[str, Any], message: str) -> None:
    error = failure(ADAPTER.translate(raw(body, route="users_bulk")))
    assert isinstance(error, InvalidRequest)
    status, answer, _ = rendered_with(ADAPTER, raw({}), error)
    assert (status, answer) == (
        400,
        {"errors": [{"code": "invalid_request", "message": message, "field": "users"}]},
    )


def test_the_bulk_limit_is_configurable() -> None:
    small = VibeFollow(max_bulk_users=2)
    request = raw({"users": [user()] * 3}, route="users_bulk", adapter=small)
    assert isinstance(failure(small.translate(request)), InvalidRequest)


def test_other_top_level_keys_of_a_bulk_body_are_kept() -> None:
    body = {"users": [user()], "source": "backfill"}
    [e] = ADAPTER.translate(raw(body, route="users_bulk")).events
    assert MessageToDict(e.extras) == {"$batch": {"source": "backfill"}}


def test_ids_follow_the_idempotency_key_and_the_route() -> None:
    body = {"users": [user(), user(external_user_id="usr_43")]}
    first = ADAPTER.translate(raw(body, route="users_bulk", idempotency_key="k-1"))
    assert first == ADAPTER.translate(raw(body, route="users_bulk", idempotency_key="k-1"))
    ids = {e.id for e in first.events}
    assert len(ids) == 2
    again = ADAPTER.translate(raw(body, route="users_bulk", idempotency_key="k-2"))
    assert ids.isdisjoint(e.id for e in again.events)
    [single] = ADAPTER.translate(raw(user(), idempotency_key="k-1")).events
    assert single.id not in ids


def summary(translation: Translation) -> tuple[object, ...]:
    error = translation.failure
    problem = None if error is None else (type(error), error.message, error.field)
    return (translation.credential, list(translation.items), problem)


RECORD = st.dictionaries(
    st.sampled_from(["external_user_id", "email", "traits", "x"]),
    st.text(max_size=3) | st.integers() | st.none() | st.dictionaries(st.text(), st.integers()),
)


@settings(max_examples=200, deadline=None)
@given(RECORD | st.fixed_dictionaries({"users": st.lists(RECORD | st.integers(), max_size=3)}))
def test_translation_never_raises_and_is_deterministic(body: Any) -> None:
    for route in ("users", "users_bulk"):
        translation = ADAPTER.translate(raw(body, route=route))
        assert (translation.failure is None) == bool(translation.items)
        assert summary(translation) == summary(ADAPTER.translate(raw(body, route=route)))
