"""Acknowledged means durable: SIGKILL the gateway while clients submit, restart it, and find every
acknowledged event stored exactly once; retrying everything then stores nothing twice."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from pathlib import Path

import aiohttp
import grpc
import pytest

from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import EventStatus, SubmitBatchRequest
from tests.harness import GatewayProcess, provision, stored_events

pytestmark = pytest.mark.slow

GRPC_CLIENTS = 3
REST_CLIENTS = 2
BATCH = 100


async def grpc_client(
    target: str, key: str, client: int, acked: set[str], sent: list[list[str]], stop: asyncio.Event
) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        b = 0
        while not stop.is_set():
            ids = [f"g{client}-{b}-{i}" for i in range(BATCH)]
            sent.append(ids)
            request = SubmitBatchRequest(events=[Event(id=i, name="purchase") for i in ids])
            try:
                response = await stub.SubmitBatch(
                    request, metadata=[("authorization", f"Bearer {key}")], timeout=10
                )
            except grpc.aio.AioRpcError:
                return  # the server died under us: this batch was never acknowledged
            assert {r.status for r in response.results} <= {
                EventStatus.EVENT_STATUS_ACCEPTED,
                EventStatus.EVENT_STATUS_DUPLICATE,
            }
            acked.update(r.event_id for r in response.results)
            b += 1


async def rest_client(
    url: str, project: str, client: int, acked: set[str], sent: list[list[str]], stop: asyncio.Event
) -> None:
    async with aiohttp.ClientSession() as session:
        b = 0
        while not stop.is_set():
            ids = [f"r{client}-{b}-{i}" for i in range(BATCH)]
            sent.append(ids)
            body = [
                {"type": "track", "payload": {"eventId": i, "name": "click", "path": "/p"}}
                for i in ids
            ]
            try:
                async with session.post(
                    f"{url}/batch?website_id={project}",
                    json=body,
                    timeout=aiohttp.ClientTimeout(10),
                ) as response:
                    if response.status != 200:
                        return
                    result = await response.json()
            except (aiohttp.ClientError, TimeoutError):
                return
            assert all(r["status"] == "success" for r in result["results"])
            acked.update(r["eventId"] for r in result["results"])
            b += 1


async def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'durable.db'}"
    project, key, _ = await provision(url)
    server = GatewayProcess(url)
    server.start()
    acked: set[str] = set()
    sent: list[list[str]] = []
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(grpc_client(server.grpc_target, key, c, acked, sent, stop))
        for c in range(GRPC_CLIENTS)
    ] + [
        asyncio.create_task(rest_client(server.http_url, project, c, acked, sent, stop))
        for c in range(REST_CLIENTS)
    ]
    # Let acknowledgements accumulate, then kill the server while requests are in flight.
    for _ in range(200):
        await asyncio.sleep(0.05)
        if len(acked) >= 3000:
            break
    server.kill()
    stop.set()
    await asyncio.gather(*clients)
    assert len(acked) >= 1000, "the load did not get going before the kill"

    server.start()  # same database: recovery is SQLite's WAL replay, nothing of ours
    try:
        stored = [e.id for e in await stored_events(url, project)]
        counts = collections.Counter(stored)
        assert not [i for i, n in counts.items() if n > 1], "an event was stored twice"
        missing = acked - set(stored)
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"

        # Clients retry every batch they sent, acknowledged or not: nothing is stored twice.
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = gateway_pb2_grpc.EventGatewayStub(channel)
            for ids in sent:
                request = SubmitBatchRequest(events=[Event(id=i, name="retry") for i in ids])
                await stub.SubmitBatch(request, metadata=[("authorization", f"Bearer {key}")])
        after = [e.id for e in await stored_events(url, project)]
        assert len(after) == len(set(after)) == len({i for ids in sent for i in ids})
    finally:
        with contextlib.suppress(Exception):
            server.terminate()
