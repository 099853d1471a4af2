"""``eventgw send`` against real gateways: one event from the command line, and a move between
gateways as ``events export | send``, which a second run repeats without storing anything twice."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from gateway.client import AsyncEventClient
from gateway.config import Settings
from tests.harness import ROOT, Gateway, started


def eventgw(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


async def test_send_one_event(gateway: Gateway) -> None:
    done = await asyncio.to_thread(
        eventgw,
        *("send", "order_completed", "--properties", '{"total": 129.5}', "--user-id", "u-42"),
        *("--event-id", "cli-1", "--target", gateway.grpc_target, "--api-key", gateway.api_key),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["rejected"], summary["rejections"]) == (1, 0, [])
    [event] = await gateway.stored()
    assert (event.id, event.name, event.identity.user_id) == ("cli-1", "order_completed", "u-42")
    assert event.properties["total"] == 129.5


async def test_send_refuses_bad_arguments(gateway: Gateway) -> None:
    bad = await asyncio.to_thread(
        eventgw, "send", "x", "--properties", "{nope", "--api-key", gateway.api_key
    )
    assert bad.returncode == 2 and b"not JSON" in bad.stderr
    keyless = await asyncio.to_thread(eventgw, "send", "x", "--target", gateway.grpc_target)
    assert keyless.returncode == 2


async def test_export_piped_into_send_moves_every_event_once(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with AsyncEventClient(gateway.grpc_target, gateway.api_key) as client:
        for i in range(1200):
            await client.track("page_view", user_id=f"u-{i % 7}", properties={"n": i})
    exported = await asyncio.to_thread(
        eventgw,
        *("events", "export", "--project", gateway.project_id),
        *("--database-url", gateway.settings.database_url),
    )
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout + b"not json\n"

    async with started(Settings(database_url=f"sqlite:///{tmp_path / 'other.db'}")) as other:
        args = ("send", "--file", "-", "--target", other.grpc_target, "--api-key", other.api_key)
        first = await asyncio.to_thread(eventgw, *args, stdin=lines)
        again = await asyncio.to_thread(eventgw, *args, stdin=lines)
        moved = {e.id: e for e in await other.stored()}

    summary = json.loads(first.stdout)
    assert first.returncode == 1  # the line that is not an event
    assert (summary["read"], summary["accepted"], summary["rejected"]) == (1201, 1200, 1)
    assert summary["rejections"][0]["line"] == 1201
    assert json.loads(again.stdout)["duplicates"] == 1200
    source = {e.id: e for e in await gateway.stored()}
    assert moved.keys() == source.keys()
    for event_id, event in moved.items():
        assert event.project_id == other.project_id
        assert event.properties == source[event_id].properties
        assert event.occurred_at == source[event_id].occurred_at
