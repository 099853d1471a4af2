"""Readiness tells the truth: an SQLite database that fills up (its file capped by
``sqlite_max_bytes``, i.e. ``PRAGMA max_page_count``) turns /readyz to 503 and gRPC health to
NOT_SERVING while writes are refused, and both come back by themselves once space is freed;
every event acknowledged on the way is stored."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import Settings
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from tests.harness import Gateway, eventually, started

MIB = 1024 * 1024


def fill(path: Path, size: int) -> None:
    """Take ``size`` bytes of the file with a table the operator can drop (no page cap here)."""
    with sqlite3.connect(path, timeout=30) as db:
        db.execute("CREATE TABLE ballast (b BLOB)")
        db.execute("INSERT INTO ballast VALUES (zeroblob(?))", (size,))


def free(path: Path) -> None:
    with sqlite3.connect(path, timeout=30) as db:
        db.execute("DROP TABLE ballast")


async def ready(http: aiohttp.ClientSession, gateway: Gateway) -> tuple[int, dict[str, str]]:
    async with http.get(gateway.ops_url + "/readyz") as r:
        return r.status, await r.json()


async def grpc_status(channel: grpc.aio.Channel) -> int:
    answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return int(answer.status)


async def test_a_full_database_is_not_ready_until_space_is_freed(tmp_path: Path) -> None:
    path = tmp_path / "small.db"
    settings = Settings(
        database_url=f"sqlite:///{path}",
        sqlite_max_bytes=4 * MIB,
        sqlite_min_free_bytes=MIB // 2,
        readiness_retry_seconds=2.0,
    )
    acked: set[str] = set()
    refused = 0
    phase = "filling"
    after_free: set[str] = set()
    async with (
        started(settings) as gw,
        aiohttp.ClientSession() as http,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        assert (await ready(http, gw))[0] == 200
        await asyncio.to_thread(fill, path, 3 * MIB)
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        auth = [("authorization", f"Bearer {gw.api_key}")]
        stop = asyncio.Event()

        async def sender() -> None:
            # A client that keeps sending 40 KB batches and retries what is refused.
            nonlocal refused
            n = 0
            while not stop.is_set():
                ids = [f"e{n}-{i}" for i in range(20)]
                n += 1
                events = [Event(id=i, name="fill", properties={"pad": "x" * 2000}) for i in ids]
                try:
                    await stub.SubmitBatch(SubmitBatchRequest(events=events), metadata=auth)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    refused += 1
                    await asyncio.sleep(0.05)
                    continue
                acked.update(ids)
                if phase == "freed":
                    after_free.update(ids)

        task = asyncio.create_task(sender())
        try:

            async def unready() -> bool:
                status, body = await ready(http, gw)
                down = await grpc_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
                return refused >= 3 and status == 503 and down and body["disk"] != "ok"

            await eventually(unready, limit_s=30)
            status, body = await ready(http, gw)
            assert (status, body["status"]) == (503, "unavailable")
            assert "bytes free" in body["disk"]

            await asyncio.to_thread(free, path)
            phase = "freed"

            async def back() -> bool:
                status, _ = await ready(http, gw)
                up = await grpc_status(channel) == health_pb2.HealthCheckResponse.SERVING
                return status == 200 and up and bool(after_free)

            await eventually(back, limit_s=30)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stored = {e.id for e in await gw.stored()}
    assert acked and refused >= 3
    assert acked <= stored, f"{len(acked - stored)} acknowledged events are missing"
