"""The official Ours Privacy Python client (``oursprivacy-client``), unchanged, against the gateway.

The client is pointed at the gateway's base URL (``base_url=<gateway>/api/v1``) and nothing else:
``track.event`` posts one event to ``/api/v1/track``; ``batch.create`` posts ``{"token", "events"}``
to ``/api/v1/batch`` and must take the gateway's 207 (one invalid row) as a success it can read
per row. The client is synchronous (httpx2, its HTTP client since 2.1), so it runs in a thread
while the server runs in the test's event loop. A request hook records what the client sends on
the wire.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2 as httpx
import pytest

from gateway.pb.event_pb2 import EventType
from tests.harness import Gateway

ours_privacy = pytest.importorskip("ours_privacy", reason="oursprivacy-client is not installed")


class Wire:
    """The requests the client made, as (method, path, headers, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, httpx.Headers, Any]] = []

    def __call__(self, request: httpx.Request) -> None:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, request.headers, body))


def client(gateway: Gateway, wire: Wire) -> Any:
    return ours_privacy.OursPrivacy(
        base_url=f"{gateway.http_url}/api/v1",
        http_client=httpx.Client(event_hooks={"request": [wire]}),
    )


async def test_track_event(gateway: Gateway) -> None:
    wire = Wire()

    def send() -> Any:
        with client(gateway, wire) as ours:
            return ours.track.event(
                token=gateway.api_key,
                event="Signup",
                distinct_id="sdk-track-1",
                user_id="visitor-1",
                email="a@example.com",
                event_properties={"plan": "pro", "seats": 3},
                user_properties={"company": "Acme"},
            )

    response = await asyncio.to_thread(send)
    assert response.success is True

    [(method, path, headers, body)] = wire.requests
    assert (method, path) == ("POST", "/api/v1/track")
    assert headers["content-type"] == "application/json"
    assert body == {
        "token": gateway.api_key,
        "event": "Signup",
        "distinctId": "sdk-track-1",
        "userId": "visitor-1",
        "email": "a@example.com",
        "eventProperties": {"plan": "pro", "seats": 3},
        "userProperties": {"company": "Acme"},
    }

    [event] = await gateway.stored()
    assert (event.id, event.dialect, event.name) == ("sdk-track-1", "ours", "Signup")
    assert event.identity.user_id == "visitor-1"
    assert event.identity.email == "a@example.com"
    assert dict(event.properties) == {"plan": "pro", "seats": 3}
    assert dict(event.user_properties) == {"company": "Acme"}


async def test_batch_with_one_invalid_row_is_a_207_the_client_takes_as_success(
    gateway: Gateway,
) -> None:
    wire = Wire()
    rows = [
        {"event": "Order", "distinct_id": "sdk-batch-1", "time": 1709251200000},
        {"event": "", "distinct_id": "sdk-batch-2"},  # invalid: an empty event name
        {"event": "Refund", "distinct_id": "sdk-batch-3", "external_id": "crm-9"},
    ]

    def send() -> Any:
        with client(gateway, wire) as ours:
            raw = ours.batch.with_raw_response.create(token=gateway.api_key, events=rows)
            return raw.http_response.status_code, raw.parse()

    status, response = await asyncio.to_thread(send)
    assert status == 207
    assert (response.success, response.accepted, response.failed) == (False, 2, 1)
    first, second, third = response.results
    assert (first.index, first.success) == (0, True)
    assert (second.index, second.success, second.code) == (1, False, "invalid_event")
    assert "events[1].event" in second.message
    assert (third.index, third.success) == (2, True)

    # Without the raw wrapper the same call returns normally (207 is no error to the client).
    def send_again() -> Any:
        with client(gateway, wire) as ours:
            return ours.batch.create(token=gateway.api_key, events=rows)

    again = await asyncio.to_thread(send_again)
    assert (again.accepted, again.failed) == (2, 1)  # duplicates count as accepted

    assert len(wire.requests) == 2  # no retry: 207 is final
    method, path, _, body = wire.requests[0]
    assert (method, path) == ("POST", "/api/v1/batch")
    assert body["token"] == gateway.api_key
    assert [r["distinctId"] for r in body["events"]] == [
        "sdk-batch-1",
        "sdk-batch-2",
        "sdk-batch-3",
    ]

    stored = await gateway.stored()
    assert [(e.id, e.name) for e in stored] == [("sdk-batch-1", "Order"), ("sdk-batch-3", "Refund")]
    assert stored[0].occurred_at.ToMilliseconds() == 1709251200000
    assert stored[1].identity.external_id == "crm-9"


async def test_a_bad_token_raises_the_clients_authentication_error(gateway: Gateway) -> None:
    wire = Wire()

    def send() -> Any:
        with client(gateway, wire) as ours:
            return ours.track.event(token="not-a-key", event="Signup")

    with pytest.raises(ours_privacy.AuthenticationError) as raised:
        await asyncio.to_thread(send)
    assert raised.value.status_code == 401
    assert raised.value.body == {"success": False, "error": "Invalid token"}
    assert len(wire.requests) == 1  # 401 is not retried
    assert await gateway.stored() == []


async def test_visitor_upsert_stores_one_identify_event(gateway: Gateway) -> None:
    wire = Wire()

    def send() -> Any:
        with client(gateway, wire) as ours:
            return ours.visitor.upsert(
                token=gateway.api_key,
                user_properties={"first_name": "Ada", "custom_properties": {"tier": "gold"}},
                external_id="crm-42",
                email="ada@example.com",
                user_id="visitor-7",
                identity_context={"ip": "203.0.113.9", "userAgent": "backend/1.0"},
                default_properties={"currency": "EUR"},
            )

    response = await asyncio.to_thread(send)
    assert response.success is True

    [(method, path, _headers, body)] = wire.requests
    assert (method, path) == ("POST", "/api/v1/identify")
    assert body["userProperties"] == {"first_name": "Ada", "custom_properties": {"tier": "gold"}}

    [event] = await gateway.stored()
    assert (event.dialect, event.name, event.type) == (
        "ours",
        "$identify",
        EventType.EVENT_TYPE_IDENTIFY,
    )
    identity = event.identity
    assert (identity.user_id, identity.external_id, identity.email) == (
        "visitor-7",
        "crm-42",
        "ada@example.com",
    )
    assert (event.device.ip, event.device.user_agent) == ("203.0.113.9", "backend/1.0")
    assert event.user_properties["first_name"] == "Ada"
    assert event.extras["defaultProperties"]["currency"] == "EUR"
