"""Backpressure: when the writer falls behind, requests wait in a bounded queue and are then
refused with a retryable answer (REST 503 + Retry-After, gRPC UNAVAILABLE), never another error;
everything acknowledged is stored. A tiny queue and a flood of concurrent requests make the
writer fall behind on any machine (each group commit is an fsync)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest

from gateway.config import Settings
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from tests.harness import Gateway, started

FLOOD = 150  # concurrent requests
EVENTS = 20  # events per request; the queue holds two requests' worth
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def tiny_queue(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'eventgw.db'}",
        queue_max_events=2 * EVENTS,
        queue_wait_seconds=0.05,
        commit_max_events=2 * EVENTS,
    )
    async with started(settings) as gateway:
        yield gateway


async def test_rest_flood_is_refused_with_503_and_retry_after(tiny_queue: Gateway) -> None:
    url = f"{tiny_queue.http_url}/batch?website_id={tiny_queue.project_id}"

    async def post(session: aiohttp.ClientSession, n: int) -> tuple[int, str | None, list[str]]:
        ids = [f"r{n}-{i}" for i in range(EVENTS)]
        body = [{"type": "track", "payload": {"eventId": i, "name": "x", "path": "/"}} for i in ids]
        async with session.post(url, data=orjson.dumps(body), headers=JSON) as response:
            await response.read()
            return response.status, response.headers.get("Retry-After"), ids

    async with aiohttp.ClientSession() as session:
        replies = await asyncio.gather(*(post(session, n) for n in range(FLOOD)))

    statuses = {status for status, _, _ in replies}
    assert statuses <= {200, 503}, statuses
    refused = [r for r in replies if r[0] == 503]
    assert refused, "no request was refused: the queue bound did not hold"
    assert all(retry_after is not None and int(retry_after) >= 1 for _, retry_after, _ in refused)
    acknowledged = {i for status, _, ids in replies if status == 200 for i in ids}
    assert acknowledged, "no request got through"
    assert {e.id for e in await tiny_queue.stored()} == acknowledged


async def test_grpc_flood_is_refused_with_unavailable(tiny_queue: Gateway) -> None:
    metadata = (("authorization", f"Bearer {tiny_queue.api_key}"),)

    async def submit(stub: gateway_pb2_grpc.EventGatewayStub, n: int) -> tuple[str, list[str]]:
        ids = [f"g{n}-{i}" for i in range(EVENTS)]
        request = SubmitBatchRequest(events=[Event(id=i, name="x") for i in ids])
        try:
            response = await stub.SubmitBatch(request, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, ids
        assert response.accepted == EVENTS
        return "OK", ids

    async with grpc.aio.insecure_channel(tiny_queue.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        replies = await asyncio.gather(*(submit(stub, n) for n in range(FLOOD)))

    codes = {code for code, _ in replies}
    assert codes <= {"OK", "UNAVAILABLE"}, codes
    assert "UNAVAILABLE" in codes, "no call was refused: the queue bound did not hold"
    acknowledged = {i for code, ids in replies if code == "OK" for i in ids}
    assert acknowledged, "no call got through"
    assert {e.id for e in await tiny_queue.stored()} == acknowledged
