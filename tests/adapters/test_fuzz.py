"""Property-based fuzzing of every adapter: arbitrary JSON (and arbitrary bytes) as the body of
every route never crashes ``translate``; the result is always events with ids and per-item
rejections by index, or a failure that ``render_error`` turns into a 4xx JSON body.

Random values alone rarely reach past an adapter's first type check, so besides bare values the
bodies are built in each dialect's own shapes (``{"events": [...]}``, ``{"token": ..}``, the
Databuddy item wrapper) from the union of every dialect's field names, each mapped to an
arbitrary JSON value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import default_adapters
from adapters.base import Adapter, RawRequest, Rejection, Route
from gateway.errors import MissingCredential
from gateway.pb.event_pb2 import Event
from tests.adapters.helpers import result_of

PROJECT = "550e8400-e29b-41d4-a716-446655440000"
# The routes that take a body (Databuddy's pixel, a GET, has its own tests).
ROUTES: list[tuple[Adapter, Route]] = [
    (a, r) for a in default_adapters() for r in a.routes if r.method == "POST"
]
ROUTE_IDS = [f"{a.name}:{r.path}" for a, r in ROUTES]
RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# Every field name some dialect reads, so that generated objects reach the field checks.
FIELDS = [
    "type", "payload", "eventId", "name", "anonymousId", "sessionId", "sessionStartTime",
    "timestamp", "path", "title", "referrer", "screen_resolution", "viewport_size", "timezone",
    "language", "connection_type", "rtt", "downlink", "utm_source", "load_time", "scroll_depth",
    "interaction_count", "page_count", "properties", "href", "text", "namespace", "websiteId",
    "source", "profileId", "event", "distinctId", "userId", "externalId", "email", "time",
    "eventProperties", "userProperties", "defaultProperties", "identityContext", "event_name",
    "user_id", "ip", "ua", "external_user_id", "events", "token",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "track", "outgoing_link", "x" * 3000, PROJECT, "tok"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(FIELDS), inner, max_size=6)
    ),
    max_leaves=40,
)
objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=12)
rows = st.lists(objects | json_values, max_size=6)
valid_ish = st.fixed_dictionaries(
    {"event": st.just("e"), "name": st.just("n"), "event_name": st.just("n")},
    optional={"user_id": st.just("u"), "external_user_id": st.just("u"), "path": st.just("/")},
)


def shaped(value: Any, kind: str) -> Any:
    """``value`` in one of the shapes the dialects expect."""
    if kind == "events":
        return {"events": value if isinstance(value, list) else [value]}
    if kind == "token":
        body = dict(value) if isinstance(value, dict) else {"events": value}
        return {**body, "token": "tok"}
    if kind == "wrapped":
        return [{"type": "track", "payload": value}]
    return value


bodies = st.builds(
    shaped,
    json_values | objects | rows | st.lists(valid_ish | objects, max_size=4),
    st.sampled_from(["bare", "events", "token", "wrapped"]),
)
media_types = st.sampled_from(["application/json", "text/plain", "", "application/xml"])


def encode(value: Any) -> bytes:
    # json.dumps writes NaN, Infinity and integers past 64 bits, which orjson refuses to parse.
    return json.dumps(value).encode()


def request_for(route: Route, body: bytes, media_type: str, key: str | None) -> RawRequest:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return RawRequest(
        route=route,
        headers=headers,
        query={"website_id": PROJECT},
        body=body,
        media_type=media_type,
        received_at=RECEIVED_AT,
        request_id="fuzz",
        idempotency_key=None,
    )


def assert_json_response(status: int, body: bytes, *, low: int, high: int) -> None:
    assert low <= status < high, status
    orjson.loads(body)  # the response is JSON


def check(adapter: Adapter, raw: RawRequest) -> None:
    translation = adapter.translate(raw)  # must not raise
    failure = translation.failure
    if failure is None and translation.credential is None:
        failure = MissingCredential("Missing credentials")  # what the gateway raises
    if failure is not None:
        response = adapter.render_error(raw, failure)
        assert_json_response(response.status, response.body, low=400, high=500)
        return
    indices = set()
    for position, item in enumerate(translation.items):
        if isinstance(item, Event):
            assert item.id, "every event has an id"
            assert item.dialect == adapter.name
            # What is stored must be readable back (protobuf refuses deep nesting on parse).
            assert Event.FromString(item.SerializeToString()) == item
        else:
            assert isinstance(item, Rejection)
            assert item.index == position or 0 <= item.index < len(translation.items)
            indices.add(item.index)
    response = adapter.render(raw, translation, result_of(translation))
    assert_json_response(response.status, response.body, low=200, high=500)


FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
@FUZZ
@given(body=bodies, media_type=media_types, keyed=st.booleans())
def test_arbitrary_json_never_crashes(
    adapter: Adapter, route: Route, body: Any, media_type: str, keyed: bool
) -> None:
    check(adapter, request_for(route, encode(body), media_type, "egw_key" if keyed else None))


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
@FUZZ
@given(body=st.binary(max_size=200), media_type=media_types)
def test_arbitrary_bytes_never_crash(
    adapter: Adapter, route: Route, body: bytes, media_type: str
) -> None:
    check(adapter, request_for(route, body, media_type, "egw_key"))


JUNK = [
    b"",
    b"   ",
    b"null",
    b"42",
    b'"x"',
    b"[]",
    b"[1,2]",
    b'[null, "x", [], {}, 1.5, true]',
    b"{",
    b'{"a":NaN}',
    b"[Infinity]",
    b"1e999",
    b"\xff\xfe\xfd",
    b'{"token": "\xc3\x28"}',
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b"[" * 1000 + b"]" * 1000,
    b'{"events": ' + b"[" * 500 + b"]" * 500 + b"}",
]


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("body", JUNK, ids=range(len(JUNK)))
def test_junk_bodies_are_clean_rejections(adapter: Adapter, route: Route, body: bytes) -> None:
    check(adapter, request_for(route, body, "application/json", "egw_key"))


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("levels", [30, 31, 32, 33, 40, 49, 50, 60, 200])
def test_deeply_nested_fields_are_rejected_or_round_trip(
    adapter: Adapter, route: Route, levels: int
) -> None:
    # Nesting within the JSON parser's limit but past protobuf's: in properties and in extras.
    event = {
        "event": "e", "name": "n", "event_name": "n", "user_id": "u", "external_user_id": "u",
        "path": "/", "distinctId": "d", "eventId": "i", "href": "https://x",
        "properties": deep(levels), "unknown": deep(levels),
    }  # fmt: skip
    for body in (event, {"events": [event]}, {**event, "token": "t"}, [event]):
        check(adapter, request_for(route, encode(body), "application/json", "egw_key"))
