"""The contract every adapter in ``adapters.default_adapters()`` must meet, checked on each route.

- a minimal valid request translates into events with ids, the adapter's dialect and the receive
  time, and renders a 2xx JSON response;
- translating the same request twice gives equal results (adapters are pure and deterministic);
- malformed input never raises: it is a request-level failure or per-item rejections, and the
  response the gateway would send is JSON with a 4xx status (a route answering per item may say
  200 if it reports that nothing was accepted);
- ``render_error`` maps every error class of ``gateway.errors`` to a JSON 4xx/5xx response.

(The routes that take a body: a GET route, such as Databuddy's pixel, is its dialect's to test.)
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from google.protobuf import text_format

import gateway.errors as errors_module
from adapters import default_adapters
from adapters.base import Adapter, RawRequest, Rejection, Response, Route, Translation
from gateway.errors import GatewayError, MissingCredential
from gateway.http.dialects import submission_of
from gateway.model import Result
from gateway.pb.event_pb2 import Event
from gateway.recording import RecordingIngestor

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SITE = "550e8400-e29b-41d4-a716-446655440000"
KEY = "egw_conformance_key"
BEARER = {"authorization": f"Bearer {KEY}"}
BASIC = {"authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


@dataclass(frozen=True)
class Minimal:
    """The smallest valid request of one route: its body, headers and query."""

    body: Any
    headers: Mapping[str, str]
    query: Mapping[str, str]


def _track(**extra: Any) -> dict[str, Any]:
    return {"name": "signup", "path": "/", **extra}


# One per (dialect, route name); a route without an entry fails test_every_route_has_a_minimal.
MINIMAL: dict[tuple[str, str], Minimal] = {
    ("databuddy", "batch"): Minimal(
        [{"type": "track", "payload": _track()}], {}, {"website_id": SITE}
    ),
    ("databuddy", "single"): Minimal({"type": "track", **_track()}, {}, {"client_id": SITE}),
    ("databuddy", "track"): Minimal({"name": "signup"}, BEARER, {}),
    ("databuddy", "identify"): Minimal({"profileId": "user-42", "websiteId": SITE}, BEARER, {}),
    ("databuddy", "vitals"): Minimal(
        [{"path": "/", "metricName": "LCP", "metricValue": 1200}], {}, {"client_id": SITE}
    ),
    ("databuddy", "errors"): Minimal([{"path": "/", "message": "boom"}], {}, {"client_id": SITE}),
    ("databuddy", "engagement"): Minimal(
        [
            {
                "timestamp": 1709294400000,
                "path": "/",
                "pageIndex": 0,
                "exitType": "spa",
                "timeOnPage": 12,
                "activeTime": 10,
                "timeToFirstInteraction": 800,
                "maxScrollDepth": 50,
                **dict.fromkeys(
                    ["scrollCount", "clickCount", "keyCount", "interactionCount", "copyCount"], 1
                ),
                **dict.fromkeys(
                    ["rageClickCount", "deadClickCount", "formFieldCount", "formSubmitCount"], 0
                ),
                "errorCount": 0,
            }
        ],
        {},
        {"client_id": SITE},
    ),
    ("databuddy", "events"): Minimal(
        [{"eventName": "signup", "timestamp": 1709294400000, "path": "/"}], {}, {"client_id": SITE}
    ),
    ("ours", "track"): Minimal({"token": KEY, "event": "Signup"}, {}, {}),
    ("ours", "batch"): Minimal(
        {"token": KEY, "events": [{"event": "Signup", "distinctId": "d-1"}]}, {}, {}
    ),
    ("ours", "identify"): Minimal({"token": KEY, "userProperties": {"first_name": "A"}}, {}, {}),
    ("appizer", "single"): Minimal({"event_name": "signup", "user_id": "u1"}, BEARER, {}),
    ("appizer", "batch"): Minimal(
        {"events": [{"event_name": "signup", "user_id": "u1"}]}, BEARER, {}
    ),
    ("appizer", "identify"): Minimal({"user_id": "u1"}, BEARER, {}),
    ("appizer", "alias"): Minimal({"user_id": "u1", "alias_id": "a1"}, BEARER, {}),
    ("vibefollow", "single"): Minimal({"external_user_id": "u1", "name": "signup"}, BEARER, {}),
    ("vibefollow", "batch"): Minimal(
        {"events": [{"external_user_id": "u1", "name": "signup"}]}, BEARER, {}
    ),
    ("vibefollow", "bulk"): Minimal(
        {"events": [{"external_user_id": "u1", "name": "signup"}]}, BEARER, {}
    ),
    ("vibefollow", "users"): Minimal({"external_user_id": "u1"}, BEARER, {}),
    ("vibefollow", "users_bulk"): Minimal({"users": [{"external_user_id": "u1"}]}, BEARER, {}),
    **{
        ("segment", kind): Minimal(
            {"userId": "u1", "event": "Signup", "groupId": "g1", "previousId": "a1"}, BASIC, {}
        )
        for kind in ("identify", "track", "page", "screen", "group", "alias", *"itpsga")
    },
    **{
        ("segment", name): Minimal(
            {"batch": [{"type": "track", "userId": "u1", "event": "Signup"}]}, BASIC, {}
        )
        for name in ("batch", "import")
    },
}

# Routes that answer per item: the predicate says the body reports nothing accepted.
NOTHING_ACCEPTED: dict[tuple[str, str], Callable[[Any], bool]] = {
    ("databuddy", "batch"): lambda b: all(r["status"] == "error" for r in b["results"]),
    ("databuddy", "track"): lambda b: b.get("count") == 0,  # `[]`: an empty batch, count 0
    ("ours", "batch"): lambda b: b["accepted"] == 0,
    ("vibefollow", "bulk"): lambda b: b["data"]["accepted"] == 0,
    ("vibefollow", "users_bulk"): lambda b: b["data"]["accepted"] == 0,
    **{
        ("segment", name): lambda b: b["accepted"] == 0
        for name in (
            "identify",
            "track",
            "page",
            "screen",
            "group",
            "alias",
            *"itpsga",
            "batch",
            "import",
        )
    },
}

DEEP = 200_000
MALFORMED: dict[str, bytes] = {
    "truncated": b"{",
    "empty": b"",
    "whitespace": b"  \n ",
    "null": b"null",
    "array": b"[]",
    "number": b"42",
    "string": b'"x"',
    "invalid-utf8": b'{"name": "\xff\xfe"}',
    "deep-array": b"[" * DEEP + b"]" * DEEP,
    "deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "nested-600": b"[" * 600 + b"]" * 600,
    "nested-object-600": b'{"events":' + b"[" * 600 + b"]" * 600 + b"}",
}

ADAPTERS = default_adapters()
# Every route that takes a JSON body and answers JSON; a GET route (Databuddy's pixel, whose event
# is its query and whose answer an image) is held by its dialect's own tests.
ROUTES = [(a, r) for a in ADAPTERS for r in a.routes if r.method == "POST"]
ROUTE_IDS = [f"{a.name}:{r.path}" for a, r in ROUTES]


def request(
    route: Route,
    minimal: Minimal,
    body: bytes | None = None,
    *,
    media_type: str = "application/json",
    idempotency_key: str | None = None,
) -> RawRequest:
    return RawRequest(
        route=route,
        headers=dict(minimal.headers),
        query=dict(minimal.query),
        body=orjson.dumps(minimal.body) if body is None else body,
        media_type=media_type,
        received_at=RECEIVED,
        request_id="conformance-1",
        idempotency_key=idempotency_key,
    )


def rendered_as_the_gateway_would(
    adapter: Adapter, raw: RawRequest, translation: Translation
) -> Response:
    """The response for a request that failed translation (credential accepted)."""
    if translation.failure is not None:
        return adapter.render_error(raw, translation.failure)
    if translation.credential is None:
        return adapter.render_error(raw, MissingCredential("Missing credentials"))
    return adapter.render(raw, translation, answered(raw, translation))


def answered(raw: RawRequest, translation: Translation) -> Result:
    """The ``Result`` the pipeline answers for a request submitted as the HTTP front does."""
    return RecordingIngestor().answer(submission_of(raw, translation, "project"))


def json_body(response: Response) -> Any:
    assert response.content_type == "application/json"
    return json.loads(response.body)


def snapshot(translation: Translation) -> tuple[Any, ...]:
    items = [
        text_format.MessageToString(i) if isinstance(i, Event) else repr(i)
        for i in translation.items
    ]
    return (translation.credential, items, repr(translation.failure), translation.claimed_projects)


def test_every_route_has_a_minimal_request() -> None:
    assert {(a.name, r.name) for a, r in ROUTES} == set(MINIMAL)


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
def test_minimal_request_translates_into_complete_events(adapter: Adapter, route: Route) -> None:
    raw = request(route, MINIMAL[adapter.name, route.name])
    translation = adapter.translate(raw)
    assert translation.failure is None
    assert translation.credential is not None
    events = translation.events
    assert events and len(events) == len(translation.items)
    for event in events:
        assert event.id
        assert event.dialect == adapter.name
        assert event.name
        assert event.HasField("received_at")
        assert event.received_at.ToDatetime(tzinfo=UTC) == RECEIVED
        assert event.HasField("occurred_at")
    result = answered(raw, translation)
    assert (result.accepted, result.rejected_count) == (len(events), 0)
    response = adapter.render(raw, translation, result)
    assert 200 <= response.status < 300
    assert json_body(response)


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
def test_translation_is_deterministic(adapter: Adapter, route: Route) -> None:
    minimal = MINIMAL[adapter.name, route.name]
    for key in (None, "idem-1"):
        first = adapter.translate(request(route, minimal, idempotency_key=key))
        second = adapter.translate(request(route, minimal, idempotency_key=key))
        assert snapshot(first) == snapshot(second)
        assert first.events  # the comparison covered real events


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
def test_generated_ids_follow_the_idempotency_key(adapter: Adapter, route: Route) -> None:
    """A retry with the same key maps to the same ids (so it deduplicates)."""
    minimal = MINIMAL[adapter.name, route.name]
    one = adapter.translate(request(route, minimal, idempotency_key="k-1"))
    again = adapter.translate(request(route, minimal, idempotency_key="k-1"))
    assert [e.id for e in one.events] == [e.id for e in again.events]
    assert len({e.id for e in one.events}) == len(one.events)


@pytest.mark.parametrize("body", MALFORMED.values(), ids=list(MALFORMED))
@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
def test_malformed_input_is_a_clean_rejection(adapter: Adapter, route: Route, body: bytes) -> None:
    raw = request(route, MINIMAL[adapter.name, route.name], body)
    translation = adapter.translate(raw)
    assert translation.events == [], "malformed input must not produce events"
    assert all(isinstance(item, Rejection) for item in translation.items)
    response = rendered_as_the_gateway_would(adapter, raw, translation)
    payload = json_body(response)
    if 400 <= response.status < 500:
        return
    per_item = NOTHING_ACCEPTED.get((adapter.name, route.name))
    assert per_item is not None and response.status == 200, (response.status, payload)
    assert per_item(payload), payload


@pytest.mark.parametrize("media_type", ["application/xml", "multipart/form-data"])
@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
def test_a_non_json_media_type_is_refused(adapter: Adapter, route: Route, media_type: str) -> None:
    raw = request(route, MINIMAL[adapter.name, route.name], media_type=media_type)
    translation = adapter.translate(raw)
    assert translation.events == []
    response = rendered_as_the_gateway_would(adapter, raw, translation)
    assert 400 <= response.status < 500
    json_body(response)


@pytest.mark.parametrize(("adapter", "route"), ROUTES, ids=ROUTE_IDS)
def test_text_plain_json_is_accepted(adapter: Adapter, route: Route) -> None:
    raw = request(route, MINIMAL[adapter.name, route.name], media_type="text/plain")
    translation = adapter.translate(raw)
    assert translation.failure is None
    assert translation.events


# -- the error family ----------------------------------------------------------------------------

# Constructor arguments beyond the message, for the classes that need them.
EXTRA_ARGS: dict[str, dict[str, Any]] = {
    "PayloadTooLarge": {"limit": 1000},
    "MissingScope": {"scope": "track:events"},
    "MethodNotAllowed": {"allowed": ("POST",)},
    "RateLimited": {"limit": 100, "window": 60.0, "retry_after": 12.5},
}


def error_classes() -> list[type[GatewayError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(cls, GatewayError) and cls.__module__ == errors_module.__name__
    ]


def make_error(cls: type[GatewayError]) -> GatewayError:
    return cls("Something went wrong", **EXTRA_ARGS.get(cls.__name__, {}))


def test_every_error_class_is_constructed() -> None:
    classes = error_classes()
    assert len(classes) >= 20
    for cls in classes:
        assert isinstance(make_error(cls), cls)


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("adapter", ADAPTERS, ids=[a.name for a in ADAPTERS])
def test_render_error_is_json_with_an_error_status(
    adapter: Adapter, cls: type[GatewayError]
) -> None:
    error = make_error(cls)
    raws = [None] + [
        request(r, MINIMAL[adapter.name, r.name]) for r in adapter.routes if r.method == "POST"
    ]  # None: no route matched
    for raw in raws:
        response = adapter.render_error(raw, error)
        assert 400 <= response.status < 600, (cls.__name__, response.status)
        payload = json_body(response)
        assert isinstance(payload, dict) and payload
        if error.retryable:
            # Clients retry these: never a permanent 4xx other than timeout, conflict, rate limit.
            assert response.status in (408, 409, 429) or response.status >= 500
        elif isinstance(error, errors_module.PermanentError):
            assert response.status < 500, (cls.__name__, response.status)
