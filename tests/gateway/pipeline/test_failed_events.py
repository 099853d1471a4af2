"""Every item the gateway refuses after it knew the project is kept in the failed-events table
with its reason and its bytes as sent (gRPC and each dialect: see also ``test_rest``'s
wrong-type test); a flood stops at the project's cap without touching accepted events;
``eventgw events failed`` lists them; retention removes them."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import grpc
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import cli
from gateway.config import Settings
from gateway.failures import Refusals
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from gateway.storage.engine import now_us
from gateway.storage.failed import FailedEventStore, failed
from tests.harness import Gateway, started


async def test_a_rejected_grpc_event_is_kept_as_the_client_encoded_it(gateway: Gateway) -> None:
    bad = Event(id="x" * 513, name="too long an id")
    request = SubmitBatchRequest(events=[Event(id="ok", name="fine"), bad])
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        await stub.SubmitBatch(request, metadata=[("authorization", f"Bearer {gateway.api_key}")])
    [kept] = await gateway.failed()
    assert (kept.dialect, kept.endpoint, kept.code, kept.field) == (
        "grpc",
        "grpc SubmitBatch",
        "invalid_field",
        "id",
    )
    assert Event.FromString(kept.raw) == bad
    assert [e.id for e in await gateway.stored()] == ["ok"]


async def test_a_rejected_batch_item_is_kept_as_sent(gateway: Gateway) -> None:
    items = [
        {"type": "track", "payload": {"name": "fine", "path": "/"}},
        {"type": "track", "payload": {"name": "page_view", "path": "/", "scroll_depth": 140}},
    ]
    async with aiohttp.ClientSession() as http:
        url = f"{gateway.http_url}/batch?client_id={gateway.project_id}"
        async with http.post(url, json=items) as reply:
            assert reply.status == 200
    [kept] = await gateway.failed()
    assert orjson.loads(kept.raw) == items[1]
    assert (kept.dialect, kept.endpoint, kept.field) == ("databuddy", "POST /batch", "scroll_depth")
    assert kept.message == "Invalid event schema"


async def test_a_flood_stops_at_the_cap_and_accepted_events_are_untouched(
    sqlite_url: str,
) -> None:
    settings = Settings(database_url=sqlite_url, failed_events_per_project=5)
    async with started(settings) as gateway, aiohttp.ClientSession() as http:
        url = f"{gateway.http_url}/api/v1/batch"
        for round_ in range(4):
            rows = [{"event": f"ok-{round_}", "distinctId": f"d-{round_}"}]
            rows += [{"event": "", "distinctId": f"bad-{round_}-{i}"} for i in range(3)]
            body = {"token": gateway.api_key, "events": rows}
            async with http.post(url, json=body) as reply:
                assert reply.status == 207
        assert len(await gateway.failed(at_least=5)) == 5  # 12 refused, 5 kept
        assert sorted(e.name for e in await gateway.stored()) == [f"ok-{i}" for i in range(4)]


async def test_events_failed_lists_them_as_json_lines(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{gateway.http_url}/v1/events/batch"
        body = {"events": [{"event_name": "ok", "user_id": "u"}, {"event_name": "no user"}]}
        headers = {"Authorization": f"Bearer {gateway.api_key}"}
        async with http.post(url, json=body, headers=headers) as reply:
            assert reply.status == 400  # Appizer: all or nothing
    assert len(await gateway.failed(at_least=2)) == 2
    argv = ["events", "failed", "--project", gateway.project_id, "--json"]
    env = {"EVENTGW_DATABASE_URL": gateway.settings.database_url}
    assert await asyncio.to_thread(cli.main, argv, env=env) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [json.loads(line["raw"]) for line in lines] == body["events"]
    assert {(line["dialect"], line["code"], line["field"]) for line in lines} == {
        ("appizer", "validation_failed", "events[1].user_id")
    }


async def test_retention_runs_in_the_serving_process(engine: AsyncEngine) -> None:
    store, project = FailedEventStore(engine), str(uuid.uuid4())
    old = failed(
        project_id=project,
        dialect="ours",
        endpoint="POST /api/v1/batch",
        received_at=now_us() - 10_000_000,
        code="invalid_event",
        message="event is required",
        field="event",
        raw=b"{}",
    )
    await store.record([old])
    refusals = Refusals(store, retention_seconds=5, flush_seconds=0.01, purge_seconds=0.05)
    await refusals.start()
    try:
        refusals.add([failed(**{**_fields(old), "received_at": now_us()})])
        for _ in range(100):
            kept = await store.list(project)
            if len(kept) == 1 and kept[0].received_at != old.received_at:
                break
            await asyncio.sleep(0.05)
        assert len(kept) == 1 and kept[0].received_at > old.received_at
    finally:
        await refusals.stop()


def _fields(item: object) -> dict[str, object]:
    names = ("project_id", "dialect", "endpoint", "received_at", "code", "message", "field", "raw")
    return {name: getattr(item, name) for name in names}
