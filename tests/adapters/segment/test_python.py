"""Segment's Python library (``segment-analytics-python``), unchanged but for host and write key.

The library queues messages and a consumer thread posts them to ``{host}/v1/batch`` with HTTP
Basic auth and ``writeKey`` and ``sentAt`` in the body; ``flush()`` blocks until the queue is
sent. It is synchronous (requests), so it runs in a thread while the server runs in the test's
event loop. An upload error reaches ``on_error``, which the tests collect and expect empty.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.pb.event_pb2 import Event, EventType
from tests.harness import Gateway

analytics = pytest.importorskip("segment.analytics", reason="segment-analytics-python is missing")
request = pytest.importorskip("segment.analytics.request")
consumer = pytest.importorskip("segment.analytics.consumer")


def client(gateway: Gateway, errors: list[Any], **options: Any) -> Any:
    return analytics.Client(
        gateway.api_key,
        host=gateway.http_url,
        on_error=lambda error, batch: errors.append((error, batch)),
        max_retries=1,
        upload_interval=0.05,
        **options,
    )


def every_call(segment: Any) -> dict[str, str]:
    """Each message type once; the message id of each, by type."""
    calls = [
        segment.identify("user-1", {"email": "ada@example.com", "plan": "pro"}),
        segment.track("user-1", "Order Completed", {"revenue": 42.5, "currency": "EUR"}),
        segment.page("user-1", "Docs", "Getting Started", {"path": "/docs/start"}),
        segment.screen("user-1", "Settings", "Profile", {"tab": "privacy"}),
        segment.group("user-1", "acme", {"name": "Acme Inc", "employees": 120}),
        segment.alias("anon-7", "user-1"),
    ]
    segment.flush()
    return {msg["type"]: msg["messageId"] for _, msg in calls}


def by_type(events: list[Event]) -> dict[int, Event]:
    return {e.type: e for e in events}


@pytest.mark.parametrize("gzip", [False, True], ids=["json", "gzip"])
async def test_every_message_type_is_stored_once(gateway: Gateway, gzip: bool) -> None:
    errors: list[Any] = []

    def send() -> dict[str, str]:
        segment = client(gateway, errors, gzip=gzip)
        try:
            return every_call(segment)
        finally:
            segment.shutdown()

    started = datetime.now(UTC)
    ids = await asyncio.to_thread(send)
    assert errors == []
    stored = await gateway.stored()
    assert sorted(e.id for e in stored) == sorted(ids.values())
    assert {e.dialect for e in stored} == {"segment"}
    events = by_type(stored)
    identify = events[EventType.EVENT_TYPE_IDENTIFY]
    assert identify.identity.user_id == "user-1"
    assert dict(identify.user_properties) == {"email": "ada@example.com", "plan": "pro"}
    track = events[EventType.EVENT_TYPE_TRACK]
    assert (track.name, dict(track.properties)) == (
        "Order Completed",
        {"revenue": 42.5, "currency": "EUR"},
    )
    page = events[EventType.EVENT_TYPE_PAGE_VIEW]
    assert (page.page.category, page.page.name) == ("Docs", "Getting Started")
    screen = events[EventType.EVENT_TYPE_SCREEN_VIEW]
    assert (screen.page.category, screen.page.name, dict(screen.properties)) == (
        "Settings",
        "Profile",
        {"tab": "privacy"},
    )
    group = events[EventType.EVENT_TYPE_GROUP]
    assert group.identity.group_id == "acme"
    assert dict(group.group_properties) == {"name": "Acme Inc", "employees": 120}
    alias = events[EventType.EVENT_TYPE_ALIAS]
    assert (alias.identity.previous_id, alias.identity.user_id) == ("anon-7", "user-1")
    for event in stored:
        assert event.library.name == "analytics-python"
        assert event.HasField("sent_at") and event.HasField("original_occurred_at")
        # Client and gateway share a clock here: the corrected time is within the test's span.
        occurred = event.occurred_at.ToDatetime(tzinfo=UTC)
        assert started.replace(microsecond=0) <= occurred <= datetime.now(UTC)


async def test_the_same_batch_twice_is_stored_once(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[Any] = []
    sent: list[dict[str, Any]] = []
    original_post = request.post

    def recording_post(*args: Any, **kwargs: Any) -> Any:
        sent.append(dict(kwargs))
        return original_post(*args, **kwargs)

    def send() -> None:
        segment = client(gateway, errors)
        try:
            segment.track("user-2", "Signed Up", {"source": "ads"})
            segment.identify("user-2", {"email": "bo@example.com"})
            segment.flush()
        finally:
            segment.shutdown()
        # The library's own upload function, with the batch it sent, once more.
        (batch,) = sent
        response = request.post(gateway.api_key, gateway.http_url, batch=batch["batch"])
        assert response.status_code == 200

    # Record what the consumer thread uploads (the library imports ``post`` by name).
    monkeypatch.setattr(consumer, "post", recording_post)
    await asyncio.to_thread(send)
    assert errors == []
    stored = await gateway.stored()
    assert len(stored) == 2
    assert {e.type for e in stored} == {EventType.EVENT_TYPE_TRACK, EventType.EVENT_TYPE_IDENTIFY}


async def test_a_wrong_write_key_is_reported_to_the_library(gateway: Gateway) -> None:
    errors: list[Any] = []

    def send() -> None:
        segment = analytics.Client(
            "not-a-key",
            host=gateway.http_url,
            on_error=lambda error, batch: errors.append((error, batch)),
            max_retries=0,
        )
        try:
            segment.track("user-3", "Clicked")
            segment.flush()
        finally:
            segment.shutdown()

    await asyncio.to_thread(send)
    ((error, batch),) = errors
    assert (error.status, error.code) == (401, "unauthorized")
    assert [m["event"] for m in batch] == ["Clicked"]
    assert await gateway.stored() == []
