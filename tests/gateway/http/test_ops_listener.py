"""The operations listener: /metrics, /readyz and /healthz answer there, and the public listener
answers only /healthz of the three (404 for the others), whatever the method."""

from __future__ import annotations

import aiohttp

from tests.harness import Gateway


async def test_metrics_and_readyz_answer_on_the_ops_listener_only(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/metrics", "/readyz", "/healthz"):
            async with http.get(gateway.ops_url + path) as r:
                assert r.status == 200, path
        for path in ("/metrics", "/readyz"):
            for method in ("GET", "HEAD", "POST"):
                async with http.request(method, gateway.http_url + path) as r:
                    assert r.status == 404, (method, path)
                    if method != "HEAD":
                        assert b"eventgw_" not in await r.read()
        async with http.get(gateway.http_url + "/healthz") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
        # The ingestion routes stay public and are not served on the ops listener.
        async with http.post(gateway.ops_url + "/api/v1/track", json={}) as r:
            assert r.status == 404
