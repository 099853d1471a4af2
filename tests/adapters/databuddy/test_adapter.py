"""Unit tests of the Databuddy adapter: field limits, credentials, extras, rendering, errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, timedelta
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from adapters.base import RawRequest, Rejection, Route, Translation
from adapters.databuddy import BATCH, PIXEL, SINGLE, TRACK, Databuddy
from adapters.databuddy.envelope import SchemaRejection
from adapters.databuddy.events import WRAPPER_EXTRAS_KEY
from adapters.fields import generated_id
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
    ProjectMismatch,
    RateLimited,
    RouteNotFound,
    StorageUnavailable,
    UnknownProject,
    UnsupportedMediaType,
)
from gateway.model import ApiKey, Outcome, ProjectRef, Status
from gateway.pb.event_pb2 import Event, EventType
from tests.adapters.helpers import RECEIVED, raw_request, result_of

NOW = RECEIVED
NOW_MS = int(NOW.timestamp() * 1000)
SITE = "550e8400-e29b-41d4-a716-446655440000"
ADAPTER = Databuddy()


def request(
    route: Route,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> RawRequest:
    return raw_request(
        route,
        raw if raw is not None else body,
        headers=headers,
        query=query if query is not None else {"website_id": SITE},
        media_type=media_type,
    )


def track_item(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "payload": {"name": "click", "path": "/", **fields}}


def one(route: Route, body: Any, **kwargs: Any) -> Event | Rejection:
    translation = ADAPTER.translate(request(route, body, **kwargs))
    assert translation.failure is None
    assert len(translation.items) == 1
    return translation.items[0]


def batch_item(**fields: Any) -> Event | Rejection:
    return one(BATCH, [track_item(**fields)])


def rejected_field(item: Event | Rejection) -> str | None:
    assert isinstance(item, SchemaRejection), item
    return item.field


def body_of(response: Any) -> Any:
    return json.loads(response.body)


# -- the adapter's shape ---------------------------------------------------------------------------


def test_routes_and_registry() -> None:
    registry = Registry((ADAPTER,))
    assert registry.match("POST", "/batch").route == BATCH
    assert registry.match("POST", "/track").route == TRACK
    assert registry.match("POST", "/").route == SINGLE
    assert BATCH.max_body_bytes == 1_048_576
    assert [r.path for r in ADAPTER.routes if not r.cors] == ["/px.jpg"]  # an image, not fetched
    assert registry.match("GET", "/px.jpg").route == PIXEL
    assert tuple(ADAPTER.prefixes) == ()
    assert "databuddy-client-id" in ADAPTER.cors_allow_headers


# -- /batch and / items ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"name": "n" * 129}, "name"),
        ({"name": 5}, "name"),
        ({"path": None}, "path"),
        ({"path": "/" * 2049}, "path"),
        ({"eventId": "e" * 513}, "eventId"),
        ({"anonymousId": "a" * 257}, "anonymousId"),
        ({"sessionId": "s" * 257}, "sessionId"),
        ({"title": "t" * 513}, "title"),
        ({"referrer": "r" * 2049}, "referrer"),
        ({"screen_resolution": "1920*1080"}, "screen_resolution"),
        ({"viewport_size": "1x1"}, "viewport_size"),
        ({"timezone": "z" * 65}, "timezone"),
        ({"language": "english please"}, "language"),
        ({"connection_type": "carrier-pigeon"}, "connection_type"),
        ({"rtt": 10_001}, "rtt"),
        ({"rtt": 12.5}, "rtt"),
        ({"downlink": 10_000.5}, "downlink"),
        ({"downlink": "fast"}, "downlink"),
        ({"utm_source": "u" * 129}, "utm_source"),
        ({"utm_campaign": 7}, "utm_campaign"),
        ({"load_time": 60_001}, "load_time"),
        ({"dom_ready_time": -1}, "dom_ready_time"),
        ({"ttfb": 60_001}, "ttfb"),
        ({"time_on_page": 86_401}, "time_on_page"),
        ({"scroll_depth": 101}, "scroll_depth"),
        ({"interaction_count": 10_001}, "interaction_count"),
        ({"interaction_count": 1.5}, "interaction_count"),
        ({"page_count": 1_001}, "page_count"),
        ({"properties": [1, 2]}, "properties"),
        ({"properties": {f"k{i}": i for i in range(51)}}, "properties"),
        ({"properties": {"big": "x" * 33_000}}, "properties"),
        ({"properties": {"k" * 129: 1}}, "properties"),
        ({"timestamp": 946_684_799_999}, "timestamp"),
        ({"timestamp": NOW_MS + 3_600_001}, "timestamp"),
        ({"timestamp": "2024-03-01T00:00:00Z"}, "timestamp"),
        ({"sessionStartTime": NOW_MS + 3_600_001}, "sessionStartTime"),
    ],
)
def test_track_field_limits(fields: dict[str, Any], field: str) -> None:
    assert rejected_field(batch_item(**fields)) == field


def test_track_limits_are_inclusive() -> None:
    item = batch_item(
        name="n" * 128,
        rtt=10_000,
        downlink=10_000,
        scroll_depth=100,
        time_on_page=86_400,
        interaction_count=10_000,
        page_count=1_000,
        timestamp=NOW_MS + 3_600_000,
        connection_type="slow-2g",
        language="zh-Hant-TW",
        properties={f"k{i}": i for i in range(50)},
    )
    assert isinstance(item, Event)
    assert item.occurred_at.ToDatetime(tzinfo=UTC) == NOW + timedelta(hours=1)


def test_track_maps_every_field() -> None:
    item = batch_item(
        eventId="e1",
        name="page_view",
        anonymousId="a",
        sessionId="s",
        sessionStartTime=NOW_MS - 60_000,
        timestamp=NOW_MS - 1_000,
        path="https://example.com/a?b=c",
        title="T",
        referrer="https://ref.example/",
        screen_resolution="1920x1080",
        viewport_size="1440x900",
        timezone="UTC",
        language="en-US",
        connection_type="wifi",
        rtt=0,
        downlink=1.5,
        utm_source="s",
        utm_medium="m",
        utm_campaign="c",
        utm_term="t",
        utm_content="x",
        load_time=1,
        dom_ready_time=2,
        ttfb=3,
        time_on_page=4,
        scroll_depth=0,
        interaction_count=6,
        page_count=7,
        properties={"k": "v"},
    )
    assert isinstance(item, Event)
    assert item.id == "e1" and item.type == EventType.EVENT_TYPE_PAGE_VIEW
    assert item.dialect == "databuddy" and item.project_id == ""
    assert item.received_at.ToDatetime(tzinfo=UTC) == NOW
    assert item.occurred_at.ToDatetime(tzinfo=UTC) == NOW - timedelta(seconds=1)
    identity = item.identity
    assert (identity.anonymous_id, identity.session_id) == ("a", "s")
    assert identity.session_started_at.ToDatetime(tzinfo=UTC) == NOW - timedelta(minutes=1)
    assert (item.page.path, item.page.title) == ("https://example.com/a?b=c", "T")
    assert item.page.referrer == "https://ref.example/"
    assert (item.device.screen_resolution, item.device.viewport_size) == ("1920x1080", "1440x900")
    assert (item.device.timezone, item.device.language) == ("UTC", "en-US")
    assert item.network.connection_type == "wifi"
    assert item.network.HasField("rtt_ms") and item.network.rtt_ms == 0
    assert item.network.downlink_mbps == 1.5
    campaign = item.campaign
    assert (campaign.source, campaign.medium, campaign.name) == ("s", "m", "c")
    assert (campaign.term, campaign.content) == ("t", "x")
    perf = item.performance
    assert (perf.load_time_ms, perf.dom_ready_time_ms, perf.ttfb_ms) == (1, 2, 3)
    assert perf.time_on_page == 4 and perf.HasField("scroll_depth") and perf.scroll_depth == 0
    assert (perf.interaction_count, perf.page_count) == (6, 7)
    assert MessageToDict(item.properties) == {"k": "v"}
    assert not item.HasField("extras")


def test_track_defaults() -> None:
    item = batch_item()
    assert isinstance(item, Event)
    assert item.type == EventType.EVENT_TYPE_TRACK
    assert item.id == generated_id(request(BATCH, []), 0)
    assert item.occurred_at.ToDatetime(tzinfo=UTC) == NOW
    for part in ("identity", "device", "network", "campaign", "performance", "link", "extras"):
        assert not item.HasField(part), part


def test_screen_view_is_a_page_view() -> None:
    item = batch_item(name="screen_view")
    assert isinstance(item, Event) and item.type == EventType.EVENT_TYPE_PAGE_VIEW


def test_extras_are_lossless() -> None:
    unknown = {
        "fcp": 410,
        "sdk": {"name": "web", "v": [1, None, True]},
        "anonymizeVisitorIds": "auto",
    }
    item = one(BATCH, [{"type": "track", "payload": {"name": "n", "path": "/", **unknown}, "x": 1}])
    assert isinstance(item, Event)
    assert MessageToDict(item.extras) == {**unknown, WRAPPER_EXTRAS_KEY: {"x": 1}}


def test_bare_items_and_missing_type() -> None:
    bare = one(BATCH, [{"name": "n", "path": "/p", "extra": "kept"}])
    typed = one(BATCH, [{"type": "track", "name": "n", "path": "/p", "extra": "kept"}])
    assert isinstance(bare, Event) and isinstance(typed, Event)
    assert MessageToDict(bare.extras) == {"extra": "kept"}
    assert MessageToDict(typed.extras) == {"extra": "kept"}


def test_deep_extras_are_a_rejection() -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"d": deep}
    assert rejected_field(batch_item(deep=deep)) == "deep"


def test_outgoing_link() -> None:
    item = one(
        BATCH, [{"type": "outgoing_link", "eventId": "l1", "href": "https://x.org", "text": "X"}]
    )
    assert isinstance(item, Event)
    assert item.type == EventType.EVENT_TYPE_OUTGOING_LINK and item.name == "outgoing_link"
    assert (item.link.href, item.link.text) == ("https://x.org", "X")
    for body, field in [
        ({"href": "https://x.org"}, "eventId"),
        ({"eventId": "l1"}, "href"),
        ({"eventId": "l1", "href": "h" * 2049}, "href"),
        ({"eventId": "l1", "href": "h", "text": "t" * 2049}, "text"),
        ({"eventId": "l1", "href": "h", "properties": "no"}, "properties"),
    ]:
        assert rejected_field(one(BATCH, [{"type": "outgoing_link", "payload": body}])) == field


def test_item_shapes() -> None:
    unknown = one(BATCH, [{"type": "identify", "payload": {"eventId": "i1"}}])
    assert isinstance(unknown, Rejection)
    assert (unknown.message, unknown.kind, unknown.event_id) == (
        "Unknown event type",
        "identify",
        "i1",
    )
    not_object = one(BATCH, ["nope"])
    assert isinstance(not_object, SchemaRejection) and not_object.kind == "track"
    bad_payload = one(BATCH, [{"type": "track", "payload": "nope"}])
    assert rejected_field(bad_payload) == "payload"
    invalid = one(BATCH, [track_item(eventId="e9", name=None)])
    assert isinstance(invalid, SchemaRejection)
    assert (invalid.message, invalid.kind, invalid.event_id) == (
        "Invalid event schema",
        "track",
        "e9",
    )
    assert (invalid.field, invalid.detail, invalid.index) == ("name", "required", 0)


@pytest.mark.parametrize(
    ("body", "message", "error"),
    [
        ({"a": 1}, "Batch endpoint expects array of events", MalformedBody),
        ([track_item()] * 101, "Batch too large", InvalidRequest),
    ],
)
def test_batch_request_failures(body: Any, message: str, error: type[GatewayError]) -> None:
    translation = ADAPTER.translate(request(BATCH, body))
    assert isinstance(translation.failure, error)
    response = ADAPTER.render_error(request(BATCH, body), translation.failure)
    assert (response.status, body_of(response)) == (400, {"status": "error", "message": message})


def test_batch_of_100_is_accepted() -> None:
    assert len(ADAPTER.translate(request(BATCH, [track_item()] * 100)).events) == 100


def test_malformed_and_unsupported_bodies() -> None:
    malformed = ADAPTER.translate(request(BATCH, raw=b"[{"))
    assert isinstance(malformed.failure, MalformedBody)
    other = ADAPTER.translate(request(BATCH, [], media_type="application/xml"))
    assert isinstance(other.failure, UnsupportedMediaType)
    beacon = ADAPTER.translate(request(BATCH, [track_item()], media_type="text/plain"))
    assert len(beacon.events) == 1


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, {"website_id": "w"}, ProjectRef("w")),
        ({}, {"client_id": "c"}, ProjectRef("c")),
        ({"databuddy-client-id": "h"}, {}, ProjectRef("h")),
        ({}, {}, None),
        ({"authorization": "Bearer k"}, {}, None),
    ],
)
def test_beacon_credentials(headers: dict[str, str], query: dict[str, str], expected: Any) -> None:
    for route in (BATCH, SINGLE):
        body = [] if route is BATCH else track_item()
        assert (
            ADAPTER.translate(request(route, body, headers=headers, query=query)).credential
            == expected
        )


# -- /track ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "body", "expected"),
    [
        ({"authorization": "Bearer k1"}, {"website_id": SITE}, {"name": "n"}, ApiKey("k1")),
        ({"authorization": "bearer k1"}, {}, {"name": "n"}, ApiKey("k1")),
        ({"x-api-key": "k2"}, {}, {"name": "n"}, ApiKey("k2")),
        ({}, {"website_id": "q"}, {"name": "n", "websiteId": "b"}, ProjectRef("q")),
        ({}, {}, [{"name": "n", "websiteId": "b"}, {"name": "m"}], ProjectRef("b")),
        ({"authorization": "Basic abc"}, {}, {"name": "n"}, None),
        ({}, {}, {"name": "n"}, None),
    ],
)
def test_track_credentials(
    headers: dict[str, str], query: dict[str, str], body: Any, expected: Any
) -> None:
    translation = ADAPTER.translate(request(TRACK, body, headers=headers, query=query))
    assert translation.failure is None and translation.credential == expected


def test_track_claimed_projects() -> None:
    body = [{"name": "a", "websiteId": "w1"}, {"name": "b", "websiteId": "w2"}, {"name": "c"}]
    translation = ADAPTER.translate(request(TRACK, body, query={"website_id": "w1"}))
    assert translation.claimed_projects == frozenset({"w1", "w2"})


def test_track_event_mapping_and_iso_timestamp() -> None:
    body = {
        "name": "n",
        "namespace": "ns",
        "timestamp": "2024-03-01T11:00:00+00:00",
        "properties": {"p": 1},
        "anonymousId": "a",
        "sessionId": "s",
        "profileId": "pr",
        "source": "sdk",
        "path": "/x",
        "eventId": "e",
        "websiteId": SITE,
        "other": [1],
    }
    (event,) = ADAPTER.translate(request(TRACK, body)).events
    assert event.type == EventType.EVENT_TYPE_CUSTOM
    assert (event.id, event.name, event.namespace, event.source) == ("e", "n", "ns", "sdk")
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == NOW - timedelta(hours=1)
    identity = event.identity
    assert (identity.anonymous_id, identity.session_id, identity.profile_id) == ("a", "s", "pr")
    assert event.page.path == "/x"
    assert MessageToDict(event.extras) == {"other": [1]}
    naive = {"name": "n", "timestamp": "2024-03-01T10:00:00"}
    (event,) = ADAPTER.translate(request(TRACK, naive)).events
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == NOW - timedelta(hours=2)
    (event,) = ADAPTER.translate(request(TRACK, {"name": "n", "timestamp": NOW_MS})).events
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == NOW


@pytest.mark.parametrize(
    "body",
    [
        {"namespace": "x"},
        {"name": ""},
        {"name": "n" * 257},
        {"name": "n", "namespace": "x" * 65},
        {"name": "n", "timestamp": {}},
        {"name": "n", "timestamp": "yesterday"},
        {"name": "n", "timestamp": NOW_MS + 0.5},
        {"name": "n", "timestamp": "2024-03-01T13:00:01Z"},
        {"name": "n", "timestamp": "1999-12-31T23:59:59Z"},
        {"name": "n", "properties": {f"k{i}": i for i in range(51)}},
        {"name": "n", "source": "s" * 65},
        {"name": "n", "anonymousId": 5},
        {"name": "n", "websiteId": 5},
        [{"name": "n"}, "x"],
        [{"name": "n"}] * 101,
        "just a string",
        42,
    ],
)
def test_track_is_all_or_nothing(body: Any) -> None:
    translation = ADAPTER.translate(request(TRACK, body))
    assert isinstance(translation.failure, InvalidRequest)
    assert translation.failure.message == "Invalid request body"
    assert translation.items == () and translation.claimed_projects == frozenset()
    response = ADAPTER.render_error(request(TRACK, body), translation.failure)
    assert (response.status, body_of(response)) == (
        400,
        {"status": "error", "message": "Invalid request body"},
    )


def test_track_failure_does_not_take_the_body_website_id() -> None:
    body = {"name": "n", "timestamp": {}, "websiteId": "w"}
    assert ADAPTER.translate(request(TRACK, body, query={})).credential is None


def test_track_names_the_failing_field() -> None:
    failure = ADAPTER.translate(request(TRACK, [{"name": "a"}, {"name": 1}])).failure
    assert failure is not None and failure.field == "[1].name"


def test_track_accepts_100_and_malformed_json() -> None:
    assert len(ADAPTER.translate(request(TRACK, [{"name": "n"}] * 100)).events) == 100
    failure = ADAPTER.translate(request(TRACK, raw=b"{oops")).failure
    assert isinstance(failure, MalformedBody)
    assert ADAPTER.render_error(request(TRACK, raw=b"{oops"), failure).status == 400


# -- render ------------------------------------------------------------------------------------


def accepted(events: list[Event], status: Status = Status.ACCEPTED) -> list[Outcome]:
    return [Outcome(status=status, event_id=e.id) for e in events]


def test_render_batch() -> None:
    body = [
        track_item(eventId="t1"),
        {"type": "outgoing_link", "payload": {"eventId": "l1", "href": "h"}},
        track_item(eventId="t2", name=None),
        {"type": "nope"},
        track_item(),
    ]
    req = request(BATCH, body)
    translation = ADAPTER.translate(req)
    outcomes = accepted(translation.events)
    outcomes[0] = Outcome(status=Status.DUPLICATE, event_id="t1")
    response = ADAPTER.render(req, translation, result_of(translation, outcomes))
    assert response.status == 200
    assert body_of(response) == {
        "status": "success",
        "batch": True,
        "processed": 5,
        "batched": {"track": 2, "outgoing_link": 1},
        "results": [
            {"status": "success", "type": "track", "eventId": "t1"},
            {"status": "success", "type": "outgoing_link", "eventId": "l1"},
            {
                "status": "error",
                "message": "Invalid event schema",
                "eventType": "track",
                "eventId": "t2",
                "errors": [{"field": "name", "message": "required"}],
            },
            {"status": "error", "message": "Unknown event type", "eventType": "nope"},
            {"status": "success", "type": "track"},
        ],
    }


def test_render_batch_rejected_outcome() -> None:
    req = request(BATCH, [track_item(eventId="t1")])
    translation = ADAPTER.translate(req)
    outcome = Outcome(status=Status.REJECTED, event_id="t1", message="too big", field="properties")
    result = body_of(ADAPTER.render(req, translation, result_of(translation, [outcome])))
    assert result["batched"] == {"track": 0, "outgoing_link": 0}
    assert result["results"] == [
        {
            "status": "error",
            "message": "too big",
            "eventType": "track",
            "eventId": "t1",
            "errors": [{"field": "properties", "message": "too big"}],
        }
    ]


def test_render_track_and_single() -> None:
    req = request(TRACK, [{"name": "a"}, {"name": "b"}])
    translation = ADAPTER.translate(req)
    response = ADAPTER.render(
        req, translation, result_of(translation, accepted(translation.events, Status.DUPLICATE))
    )
    assert body_of(response) == {"status": "success", "type": "custom_event", "count": 2}
    req = request(SINGLE, {"type": "outgoing_link", "eventId": "l", "href": "h"})
    translation = ADAPTER.translate(req)
    response = ADAPTER.render(
        req, translation, result_of(translation, accepted(translation.events))
    )
    assert (response.status, body_of(response)) == (
        200,
        {"status": "success", "type": "outgoing_link"},
    )
    req = request(SINGLE, {"name": "n"})
    response = ADAPTER.render(req, ADAPTER.translate(req), [])
    assert response.status == 400
    assert body_of(response) == {
        "status": "error",
        "message": "Invalid event schema",
        "errors": [{"field": "path", "message": "required"}],
    }
    req = request(SINGLE, {"type": "web_vitals"})
    response = ADAPTER.render(req, ADAPTER.translate(req), [])
    assert (response.status, body_of(response)) == (
        400,
        {"status": "error", "message": "Unknown event type"},
    )


# -- render_error ------------------------------------------------------------------------------

RATE = RateLimited("Too many requests", limit=10, window=1.0, retry_after=1.5)


@pytest.mark.parametrize(
    ("route", "error", "status", "message"),
    [
        (BATCH, MissingCredential("no credential"), 400, "Missing client ID"),
        (SINGLE, MissingCredential("no credential"), 400, "Missing client ID"),
        (BATCH, UnknownProject("unknown"), 400, "Invalid or inactive client ID"),
        (BATCH, InvalidCredential("bad key"), 400, "Invalid or inactive client ID"),
        (TRACK, MissingCredential("no credential"), 401, "API key or website_id required"),
        (TRACK, InvalidCredential("bad key"), 401, "Invalid API key"),
        (TRACK, UnknownProject("unknown"), 404, "Website not found"),
        (
            TRACK,
            MissingScope("scope", scope="track:events"),
            403,
            "API key missing track:events scope",
        ),
        (TRACK, ProjectMismatch("other project"), 403, "Website scope mismatch"),
        (BATCH, OriginNotAllowed("origin"), 403, "Origin not authorized"),
        (TRACK, OriginNotAllowed("origin"), 403, "Origin not authorized"),
        (TRACK, MalformedBody("Malformed JSON"), 400, "Invalid request body"),
        (BATCH, MalformedBody("Request body is empty"), 400, "Request body is empty"),
        (
            BATCH,
            UnsupportedMediaType("Unsupported content type: a/b"),
            415,
            "Unsupported content type: a/b",
        ),
        (
            TRACK,
            UnsupportedMediaType("Unsupported content type: a/b"),
            415,
            "Unsupported content type: a/b",
        ),
        (BATCH, PayloadTooLarge("Payload too large", limit=1), 413, "Payload too large"),
        (TRACK, PayloadTooLarge("Payload too large", limit=1), 413, "Payload too large"),
        (BATCH, IdempotencyKeyReused("reused"), 422, "reused"),
        (TRACK, IdempotencyInFlight("in flight"), 409, "in flight"),
        (BATCH, RATE, 429, "Too many requests"),
        (TRACK, Overloaded("busy", retry_after=2), 503, "busy"),
        (BATCH, StorageUnavailable("db down"), 503, "db down"),
        (None, RouteNotFound("Not found"), 404, "Not found"),
        (
            None,
            MethodNotAllowed("Method not allowed", allowed=("POST",)),
            405,
            "Method not allowed",
        ),
    ],
)
def test_render_error(route: Route | None, error: GatewayError, status: int, message: str) -> None:
    req = request(route, []) if route is not None else None
    response = ADAPTER.render_error(req, error)
    assert response.status == status
    assert body_of(response) == {"status": "error", "message": message}
    assert response.content_type == "application/json"


def test_render_error_headers() -> None:
    assert ADAPTER.render_error(None, RATE).headers["Retry-After"] == "2"
    overloaded = ADAPTER.render_error(request(TRACK, []), Overloaded("busy", retry_after=3))
    assert overloaded.headers["Retry-After"] == "3"
    assert "Retry-After" not in ADAPTER.render_error(None, StorageUnavailable("down")).headers
    not_allowed = ADAPTER.render_error(None, MethodNotAllowed("no", allowed=("POST",)))
    assert not_allowed.headers["Allow"] == "POST"


# -- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body"),
    [
        (BATCH, [track_item(), track_item(eventId="x"), {"type": "outgoing_link"}, 5]),
        (TRACK, [{"name": "a"}, {"name": "b", "timestamp": "2024-03-01T00:00:00Z"}]),
        (SINGLE, {"name": "n", "path": "/", "extra": {"k": [1, 2]}}),
        (TRACK, {"name": ""}),
    ],
)
def test_translation_is_deterministic(route: Route, body: Any) -> None:
    def summary(translation: Translation) -> tuple[Any, ...]:
        failure = translation.failure
        return (
            translation.credential,
            translation.claimed_projects,
            [
                item.SerializeToString(deterministic=True) if isinstance(item, Event) else item
                for item in translation.items
            ],
            None if failure is None else (type(failure), failure.message, failure.field),
        )

    first = ADAPTER.translate(request(route, body))
    assert summary(first) == summary(ADAPTER.translate(request(route, body)))


def test_generated_ids_follow_the_idempotency_key() -> None:
    def ids(key: str | None, request_id: str) -> list[str]:
        raw = raw_request(
            BATCH,
            [track_item(), track_item()],
            query={"website_id": SITE},
            request_id=request_id,
            idempotency_key=key,
        )
        return [e.id for e in ADAPTER.translate(raw).events]

    assert ids("k", "r1") == ids("k", "r2")
    assert ids(None, "r1") != ids(None, "r2")
    assert len(set(ids(None, "r1"))) == 2
