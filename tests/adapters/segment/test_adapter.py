"""The Segment adapter's rules beyond its golden cases: limits, credentials, batch sharing."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import json_format

from adapters.base import Route
from adapters.registry import Registry, parameters
from adapters.segment import Segment
from gateway.errors import PayloadTooLarge
from gateway.model import ApiKey
from gateway.pb.event_pb2 import Event, EventType
from tests.adapters.helpers import raw_request

ADAPTER = Segment()
ROUTES = {route.name: route for route in ADAPTER.routes}
BASIC = {"authorization": "Basic " + base64.b64encode(b"wk_123:").decode()}


def extras(event: Event) -> dict[str, Any]:
    return json_format.MessageToDict(event.extras)


def route(name: str) -> Route:
    return ROUTES[name]


def track(**extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u-1", "event": "Clicked", **extra}


def test_a_batch_over_500_kb_is_refused_whole() -> None:
    messages = [track(properties={"blob": "x" * 20_000}) for _ in range(26)]
    body = orjson.dumps({"batch": messages})
    assert len(body) > 500 * 1024
    translation = ADAPTER.translate(raw_request(route("batch"), body, headers=BASIC))
    assert isinstance(translation.failure, PayloadTooLarge)
    assert translation.events == []
    response = ADAPTER.render_error(None, translation.failure)
    assert response.status == 400
    assert orjson.loads(response.body)["code"] == "payload_too_large"


def test_basic_auth_wins_over_the_body_and_bad_basic_falls_back_to_it() -> None:
    both = ADAPTER.translate(
        raw_request(route("track"), {**track(), "writeKey": "other"}, headers=BASIC)
    )
    assert both.credential == ApiKey("wk_123")
    assert "writeKey" not in both.events[0].extras
    broken = {"authorization": "Basic !!not-base64"}
    body = ADAPTER.translate(
        raw_request(route("track"), {**track(), "writeKey": "wk_body"}, headers=broken)
    )
    assert body.credential == ApiKey("wk_body")
    assert ADAPTER.translate(raw_request(route("track"), track())).credential is None


def test_batch_context_is_merged_into_each_message_which_wins() -> None:
    body = {
        "batch": [track(context={"ip": "1.1.1.1"}), track(type="page", name="Home")],
        "context": {"ip": "9.9.9.9", "library": {"name": "analytics-python", "version": "2.3"}},
        "integrations": {"All": False},
        "writeKey": "wk_123",
    }
    events = ADAPTER.translate(raw_request(route("batch"), body)).events
    assert [e.device.ip for e in events] == ["1.1.1.1", "9.9.9.9"]
    assert {e.library.name for e in events} == {"analytics-python"}
    assert events[1].type == EventType.EVENT_TYPE_PAGE_VIEW and events[1].page.name == "Home"
    assert all(extras(e)["integrations"] == {"All": False} for e in events)


def test_the_same_batch_twice_maps_to_the_same_ids() -> None:
    body = {"batch": [track(), track(messageId="m-1")]}
    first = ADAPTER.translate(raw_request(route("batch"), body, headers=BASIC, request_id="a"))
    again = ADAPTER.translate(raw_request(route("batch"), body, headers=BASIC, request_id="a"))
    assert [e.id for e in first.events] == [e.id for e in again.events]
    assert first.events[1].id == "m-1"


def test_a_context_key_of_an_unexpected_type_is_kept_not_refused() -> None:
    body = track(context={"ip": 42, "screen": {"width": "wide", "height": 568}})
    (event,) = ADAPTER.translate(raw_request(route("track"), body, headers=BASIC)).events
    assert not event.device.ip and event.device.screen_height == 568
    assert extras(event)["context"] == {"ip": 42, "screen": {"width": "wide"}}


def test_the_settings_route_is_matched_by_its_template() -> None:
    registry = Registry([ADAPTER])
    match = registry.match("GET", "/v1/projects/wk_123/settings")
    assert match.route is not None and match.route.name == "settings"
    assert parameters(match.route, "/v1/projects/wk_123/settings") == {"writeKey": "wk_123"}
    assert registry.match("POST", "/v1/projects/wk_123/settings").allowed_methods == ("GET",)
    assert registry.match("GET", "/v1/projects/wk_123/other").route is None
    assert registry.match("GET", "/v1/projects/a/b/settings").route is None
