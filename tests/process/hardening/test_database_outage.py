"""The database becoming unavailable under a real server (PostgreSQL): every dialect answers its
retryable error with ``Retry-After`` (503; Ours Privacy's documented transient 500 with
``"retryable": true``), gRPC answers UNAVAILABLE with a RetryInfo, nothing answers a plain 500,
and the gateway recovers by itself when the database returns.

The outage is real: ``ALTER DATABASE .. ALLOW_CONNECTIONS false`` and every backend of the
gateway's database terminated, from a maintenance connection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.engine import make_url

from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import GetSubmissionRequest, SubmitBatchRequest
from tests.backends import maintenance_url
from tests.process.hardening.conftest import DIALECTS, Server, post_valid, start_server, stop_server

pytestmark = pytest.mark.postgres

MAINTENANCE_URL = maintenance_url()


@pytest.fixture
async def database() -> AsyncIterator[tuple[asyncpg.Connection, str, str]]:
    """A fresh database: (maintenance connection, its name, its URL); dropped afterwards."""
    try:
        maintenance = await asyncpg.connect(MAINTENANCE_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {MAINTENANCE_URL}: {exc!r}", pytrace=False)
    name = f"eventgw_outage_{uuid.uuid4().hex[:12]}"
    await maintenance.execute(f'CREATE DATABASE "{name}"')
    url = make_url(MAINTENANCE_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield maintenance, name, url
    finally:
        await maintenance.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await maintenance.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await maintenance.close()


async def outage(maintenance: asyncpg.Connection, name: str, *, down: bool) -> None:
    await maintenance.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not down).lower()}')
    if down:
        await maintenance.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )


async def grpc_call(server: Server) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        request = SubmitBatchRequest(events=[Event(id=uuid.uuid4().hex, name="outage")])
        try:
            await stub.SubmitBatch(
                request, metadata=(("authorization", f"Bearer {server.key}"),), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                status = rpc_status.from_call(exc)
                assert status is not None, "UNAVAILABLE without retry info"
                info = error_details_pb2.RetryInfo()
                assert status.details[0].Unpack(info)
                assert info.retry_delay.ToMilliseconds() > 0
            return exc.code()
    return grpc.StatusCode.OK


async def grpc_lookup(server: Server) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        request = GetSubmissionRequest(idempotency_key="nothing-here")
        try:
            await stub.GetSubmission(
                request, metadata=(("authorization", f"Bearer {server.key}"),), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def assert_retryable(dialect: str, status: int, doc: dict[str, Any], headers: Any) -> None:
    assert "Retry-After" in headers, (dialect, status, doc)
    if dialect == "ours":
        # Seed 003: "500 means the request hit a transient failure": retry with the same ids.
        assert status == 500 and doc["retryable"] is True, doc
    else:
        assert status == 503, (dialect, status, doc)


async def test_database_outage_is_retryable_and_recovers(
    database: tuple[asyncpg.Connection, str, str],
) -> None:
    maintenance, name, url = database
    server = await asyncio.to_thread(start_server, url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def every_dialect() -> list[tuple[str, int, dict[str, Any], Any]]:
                return [
                    (
                        d,
                        *await post_valid(
                            session, server.http_url, d, server.key, server.project_id
                        ),
                    )
                    for d in DIALECTS
                ]

            for dialect, status, doc, _ in await every_dialect():
                assert 200 <= status < 300, (dialect, status, doc)
            assert await grpc_call(server) == grpc.StatusCode.OK

            await outage(maintenance, name, down=True)
            # First with the key still cached (the commit fails), then past the auth cache
            # (the key lookup itself fails).
            for _ in range(2):
                for dialect, status, doc, headers in await every_dialect():
                    assert_retryable(dialect, status, doc, headers)
                assert await grpc_call(server) == grpc.StatusCode.UNAVAILABLE
                assert await grpc_lookup(server) == grpc.StatusCode.UNAVAILABLE
                async with session.get(server.ops_url + "/readyz") as resp:
                    assert resp.status == 503
                async with session.get(server.http_url + "/healthz") as resp:
                    assert resp.status == 200
                await asyncio.sleep(1.2)

            await outage(maintenance, name, down=False)
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                results = await every_dialect()
                if all(200 <= status < 300 for _, status, _, _ in results):
                    break
                for dialect, status, doc, headers in results:
                    if not 200 <= status < 300:
                        assert_retryable(dialect, status, doc, headers)
                assert asyncio.get_running_loop().time() < deadline, results
                await asyncio.sleep(0.2)
            assert await grpc_call(server) == grpc.StatusCode.OK
            assert await grpc_lookup(server) == grpc.StatusCode.NOT_FOUND
            async with session.get(server.ops_url + "/readyz") as resp:
                assert resp.status == 200
        assert server.alive()
    finally:
        await asyncio.to_thread(stop_server, server)
