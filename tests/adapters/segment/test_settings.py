"""Segment's browser settings endpoint and CORS through a real server.

``GET /v1/projects/{writeKey}/settings`` answers the document analytics-next loads at start,
naming this gateway (the request's host) as its only destination; an unknown write key is 401 in
Segment's envelope; browsers' preflights for the message routes are answered.
"""

from __future__ import annotations

import aiohttp

from tests.harness import Gateway

ORIGIN = "http://127.0.0.1:1"


async def test_settings_name_the_gateway_as_the_only_destination(gateway: Gateway) -> None:
    url = f"{gateway.http_url}/v1/projects/{gateway.api_key}/settings"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Origin": ORIGIN}) as response,
    ):
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        document = await response.json()
    host = gateway.http_url.removeprefix("http://")
    assert list(document["integrations"]) == ["Segment.io"]
    destination = document["integrations"]["Segment.io"]
    assert destination["apiKey"] == gateway.api_key
    assert (destination["apiHost"], destination["protocol"]) == (f"{host}/v1", "http")
    assert document["metrics"]["sampleRate"] == 0
    assert document["remotePlugins"] == []
    assert await gateway.stored() == []


async def test_settings_of_an_unknown_write_key_are_refused(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{gateway.http_url}/v1/projects/not-a-key/settings"
        async with session.get(url) as response:
            assert response.status == 401
            assert (await response.json())["success"] is False
        async with session.post(url, json={}) as response:
            assert response.status == 405
            assert response.headers["Allow"] == "GET"


async def test_message_routes_answer_the_preflight(gateway: Gateway) -> None:
    headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with aiohttp.ClientSession() as session:
        for path in ("/v1/t", "/v1/track", "/v1/batch"):
            async with session.options(gateway.http_url + path, headers=headers) as response:
                assert response.status == 204, path
                assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
                allowed = response.headers["Access-Control-Allow-Headers"]
                assert "Authorization" in allowed
