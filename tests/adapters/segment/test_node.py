"""Segment's Node library (``@segment/analytics-node``, pinned in ``node/package.json``),
unchanged but for host and write key, against the gateway.

``node/segment_calls.mjs`` makes one call of each type and ``closeAndFlush()``es: the library
posts them as one ``{batch, writeKey, sentAt}`` to ``/v1/batch`` with HTTP Basic auth. The
script then posts that request once more, byte for byte. Each message must be stored once with
its type and fields. Skipped, saying why, without node or npm.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.pb.event_pb2 import EventType
from tests.adapters.npm import NODE_DIR, node_with
from tests.harness import Gateway

pytestmark = pytest.mark.node

SCRIPT = NODE_DIR / "segment_calls.mjs"


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@segment/analytics-node")


async def run_script(node: str, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        *args,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


async def test_every_message_type_is_stored_once_and_a_resent_batch_adds_nothing(
    gateway: Gateway, node: str
) -> None:
    report = await run_script(node, gateway.http_url, gateway.api_key)
    assert report["errors"] == []
    assert report["responses"] == [200]
    (request,) = report["requests"]
    assert request["url"] == f"{gateway.http_url}/v1/batch"
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert [m["type"] for m in request["body"]["batch"]] == [
        "identify",
        "track",
        "page",
        "screen",
        "group",
        "alias",
    ]
    assert report["resent"] == {"status": 200, "body": {"success": True}}

    ids: dict[str, str] = report["ids"]
    stored = await gateway.stored()
    assert sorted(e.id for e in stored) == sorted(ids.values())
    events = {e.id: e for e in stored}
    identify = events[ids["identify"]]
    assert identify.type == EventType.EVENT_TYPE_IDENTIFY
    assert dict(identify.user_properties) == {"email": "ada@example.com", "plan": "pro"}
    track = events[ids["track"]]
    assert (track.type, track.name, dict(track.properties)) == (
        EventType.EVENT_TYPE_TRACK,
        "Order Completed",
        {"revenue": 42.5},
    )
    page = events[ids["page"]]
    assert page.type == EventType.EVENT_TYPE_PAGE_VIEW
    assert (page.page.category, page.page.name) == ("Docs", "Getting Started")
    screen = events[ids["screen"]]
    assert screen.type == EventType.EVENT_TYPE_SCREEN_VIEW
    assert (screen.page.category, screen.page.name) == ("Settings", "Profile")
    group = events[ids["group"]]
    assert (group.type, group.identity.group_id) == (EventType.EVENT_TYPE_GROUP, "acme")
    assert dict(group.group_properties) == {"name": "Acme Inc"}
    alias = events[ids["alias"]]
    assert alias.type == EventType.EVENT_TYPE_ALIAS
    assert (alias.identity.previous_id, alias.identity.user_id) == ("anon-7", "node-1")
    for event in stored:
        assert event.identity.user_id == "node-1"
        assert event.library.name == "@segment/analytics-node"
        assert event.HasField("sent_at")
