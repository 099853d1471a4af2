"""``GET /px.jpg``, the tracker's pixel mode, through a real gateway: a page view in the query is
stored and answered with the 1x1 GIF; a broken pixel request gets the same image and stores
nothing. And the query is read back into the event as the vendor reads it."""

from __future__ import annotations

import json

import aiohttp
import pytest

from adapters.databuddy.pixel import GIF, event_of
from gateway.pb.event_pb2 import EventType
from tests.harness import Gateway

T0 = 1709294400000


async def pixel(gateway: Gateway, query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.http_url}/px.jpg", params=query) as reply,
    ):
        return reply.status, await reply.read(), dict(reply.headers)


def page_view(gateway: Gateway, **extra: str) -> dict[str, str]:
    return {
        "type": "track",
        "eventId": "px-1",
        "name": "page_view",
        "path": "https://www.example.com/pricing",
        "anonymousId": "anon_9f8e7d",
        "timestamp": str(T0),
        "screen_resolution": "1920x1080",
        "properties": json.dumps({"plan": "pro", "seats": 3}),
        "client_id": gateway.project_id,
        "sdk_name": "web",
        "sdk_version": "2.6.0",
        **extra,
    }


async def test_a_page_view_in_the_query_is_stored_and_answered_with_the_image(
    gateway: Gateway,
) -> None:
    status, body, headers = await pixel(gateway, page_view(gateway))
    assert (status, body, headers["Content-Type"]) == (200, GIF, "image/gif")
    assert "no-store" in headers["Cache-Control"] and headers["Pragma"] == "no-cache"
    [event] = await gateway.stored()
    assert (event.id, event.type, event.name) == (
        "px-1",
        EventType.EVENT_TYPE_PAGE_VIEW,
        "page_view",
    )
    assert event.page.path == "https://www.example.com/pricing"
    assert event.occurred_at.ToMilliseconds() == T0
    assert event.device.screen_resolution == "1920x1080"
    assert dict(event.properties) == {"plan": "pro", "seats": 3}
    assert not event.HasField("extras")  # the SDK's own keys are not the event's
    again = await pixel(gateway, page_view(gateway))  # the same eventId: stored once
    assert again[:2] == (200, GIF) and len(await gateway.stored()) == 1


@pytest.mark.parametrize(
    "broken",
    [
        {"client_id": "00000000-0000-0000-0000-000000000000"},  # no such website
        {"client_id": ""},  # no website at all
        {"name": ""},  # fails the schema
        {"timestamp": "not-a-time"},
        {"type": "web_vitals"},  # no pixel form
    ],
    ids=repr,
)
async def test_a_broken_pixel_still_answers_the_image_and_stores_nothing(
    gateway: Gateway, broken: dict[str, str]
) -> None:
    status, body, headers = await pixel(gateway, page_view(gateway, **broken))
    assert (status, body, headers["Content-Type"]) == (200, GIF, "image/gif")
    assert await gateway.stored() == []


def test_the_query_is_read_back_as_the_vendor_reads_it() -> None:
    query = {
        "type": "outgoing_link",
        "href": "https://partner.example",
        "count": "3",
        "ratio": "0.5",
        "consent": "true",
        "ref[source]": "hn",
        "ref[deep][level]": "2",
        "properties": "{not json",
        "client_id": "site",
        "sdk_name": "web",
        "sdk_version": "2.6.0",
    }
    assert event_of(query) == {
        "type": "outgoing_link",
        "href": "https://partner.example",
        "count": 3,
        "ratio": 0.5,
        "consent": True,
        "ref": {"source": "hn", "deep": {"level": 2}},
        "properties": {},
    }
