"""Segment's browser library (``@segment/analytics-next``, its standalone bundle from the pinned
npm package) on a page served by the test, in headless Chromium (Debian's ``chromium``, driven by
Playwright), with its CDN and API hosts pointed at the gateway.

The page sets the snippet's write key and CDN (``analytics._cdn`` = the gateway), buffers a
``page()`` and a ``track()`` and loads the bundle. The library fetches
``/v1/projects/<writeKey>/settings`` from the gateway, which names the gateway as the only
destination, then posts each call to ``/v1/p`` and ``/v1/t`` (CORS, with a preflight for its
Basic auth). Both must be stored, and the page must make no request to any other host and get no
error answer. Skipped, saying why, without Chromium, Playwright or npm.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from gateway.pb.event_pb2 import EventType
from tests.adapters.npm import installed, node_with
from tests.harness import Gateway, eventually, free_port

pytestmark = pytest.mark.node

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")

BUNDLE = installed("@segment/analytics-next") / "dist" / "umd" / "standalone.js"

PAGE = """<!doctype html>
<html><head><title>eventgw</title><link rel="icon" href="data:,">
<script>
  var analytics = (window.analytics = []);
  analytics._writeKey = %(key)r;
  analytics._cdn = %(cdn)r;
  ["page", "track", "identify"].forEach(function (method) {
    analytics[method] = function () {
      var args = Array.prototype.slice.call(arguments);
      args.unshift(method);
      analytics.push(args);
      return analytics;
    };
  });
  analytics.page("Docs", "Getting Started", { section: "intro" });
  analytics.track("Signup Clicked", { plan: "pro" });
</script>
<script src="/standalone.js"></script>
</head><body>eventgw</body></html>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    node_with("@segment/analytics-next")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium package is needed to run analytics-next")
    return path


@pytest.fixture
async def page_url(gateway: Gateway) -> AsyncIterator[str]:
    """A page server on its own port of 127.0.0.1: the test page and the library's bundle."""

    async def index(_: web.Request) -> web.Response:
        html = PAGE % {"key": gateway.api_key, "cdn": gateway.http_url}
        return web.Response(text=html, content_type="text/html")

    async def bundle(_: web.Request) -> web.FileResponse:
        return web.FileResponse(BUNDLE)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/standalone.js", bundle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_page_and_track_reach_the_gateway_and_no_other_host(
    gateway: Gateway, page_url: str, chromium: str
) -> None:
    requests: list[str] = []
    failures: list[str] = []
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = await browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failures.append(f"{r.url} {r.failure}"))
            page.on(
                "response",
                lambda r: failures.append(f"{r.url} {r.status}") if r.status >= 400 else None,
            )
            await page.goto(page_url)

            async def both_stored() -> bool:
                return len(await gateway.stored()) >= 2

            await eventually(both_stored, limit_s=30)
        finally:
            await browser.close()

    assert failures == []
    assert {urlsplit(url).hostname for url in requests} == {"127.0.0.1"}
    gateway_paths = {urlsplit(u).path for u in requests if u.startswith(gateway.http_url)}
    assert gateway_paths == {f"/v1/projects/{gateway.api_key}/settings", "/v1/p", "/v1/t"}
    events = {e.type: e for e in await gateway.stored()}
    assert len(events) == 2
    page_view = events[EventType.EVENT_TYPE_PAGE_VIEW]
    assert (page_view.page.category, page_view.page.name) == ("Docs", "Getting Started")
    assert page_view.page.url == page_url
    assert page_view.library.name == "analytics.js"
    assert page_view.device.user_agent
    track = events[EventType.EVENT_TYPE_TRACK]
    assert (track.name, dict(track.properties)) == ("Signup Clicked", {"plan": "pro"})
    assert track.identity.anonymous_id and track.identity.anonymous_id == (
        page_view.identity.anonymous_id
    )
