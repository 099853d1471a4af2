"""Keys completed before migration 0002 (a rendered answer stored whole) still replay byte for
byte after it, over HTTP and gRPC; keys completed after it (a stored ``Result``) are rendered
again by their front, identical to the first answer."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import aiohttp
import grpc
import orjson
from sqlalchemy import insert

from gateway import migrate
from gateway.config import Settings
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import (
    EventStatus,
    ResultView,
    SubmitBatchRequest,
    SubmitBatchResponse,
)
from gateway.pb.gateway_pb2_grpc import EventGatewayStub
from gateway.storage.engine import create_engine
from gateway.storage.schema import idempotency_keys
from tests.harness import started

PROJECT = str(uuid.uuid4())
OURS_PATH = "/api/v1/batch"
LEGACY_BODY = (
    b'{"success": true,  "accepted": 1, "failed": 0, "results": [{"index": 0, "success": true}]}'
)


async def store_legacy_key(
    url: str,
    endpoint: str,
    fingerprint: str,
    status: int,
    body: bytes,
    headers: dict[str, str],
    key: str,
) -> None:
    """A completed key as the gateway stored it before 0002: its rendered answer."""
    engine = create_engine(Settings(database_url=url))
    now = time.time_ns() // 1000
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(idempotency_keys).values(
                    project_id=PROJECT,
                    key=key,
                    endpoint=endpoint,
                    fingerprint=fingerprint,
                    state="completed",
                    token="t" * 32,
                    status_code=status,
                    response_headers=orjson.dumps(headers).decode(),
                    response_body=body,
                    created_at=now,
                    locked_at=now,
                    expires_at=now + 3_600_000_000,
                )
            )
    finally:
        await engine.dispose()


async def test_keys_stored_before_the_migration_replay_byte_for_byte(sqlite_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, sqlite_url, "0001")
    body = orjson.dumps({"token": "{key}", "events": [{"event": "e", "distinctId": "d-1"}]})
    grpc_request = SubmitBatchRequest(events=[Event(id="g-1", name="n")], idempotency_key="g-key")
    legacy_grpc = SubmitBatchResponse(accepted=1)
    legacy_grpc.results.add(index=0, status=EventStatus.EVENT_STATUS_ACCEPTED, event_id="g-1")
    grpc_fingerprint = hashlib.sha256(
        grpc_request.SerializeToString(deterministic=True)
    ).hexdigest()
    await store_legacy_key(
        sqlite_url,
        "grpc SubmitBatch",
        grpc_fingerprint,
        0,
        legacy_grpc.SerializeToString(),
        {},
        "g-key",
    )
    async with started(Settings(database_url=sqlite_url), project_id=PROJECT) as gw:
        # The HTTP fingerprint covers the body as sent, key included: store it with this key.
        sent = body.replace(b"{key}", gw.api_key.encode())
        endpoint = f"POST {OURS_PATH}"
        fingerprint = hashlib.sha256(endpoint.encode() + b"\x00" + sent).hexdigest()
        headers = {"Content-Type": "application/json", "X-Vendor": "kept"}
        await store_legacy_key(
            sqlite_url, endpoint, fingerprint, 207, LEGACY_BODY, headers, "h-key"
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                gw.http_url + OURS_PATH,
                data=sent,
                headers={"Content-Type": "application/json", "Idempotency-Key": "h-key"},
            ) as response,
        ):
            assert response.status == 207
            assert await response.read() == LEGACY_BODY
            assert response.headers["Idempotent-Replayed"] == "true"
            assert response.headers["X-Vendor"] == "kept"
            assert response.headers["Content-Type"].startswith("application/json")
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            stub = EventGatewayStub(channel)
            auth = (("authorization", f"Bearer {gw.api_key}"),)
            again = await stub.SubmitBatch(grpc_request, metadata=auth)
            grpc_request.result_view = ResultView.RESULT_VIEW_EXCEPTIONS
            exceptions = await stub.SubmitBatch(grpc_request, metadata=auth)
        expected = SubmitBatchResponse()
        expected.CopyFrom(legacy_grpc)
        expected.replayed = True
        assert again == expected
        assert exceptions == SubmitBatchResponse(accepted=1, replayed=True)
        assert await gw.stored() == []  # a replay stores nothing


async def test_keys_stored_after_the_migration_render_the_same_answer_again(
    sqlite_url: str,
) -> None:
    async with started(Settings(database_url=sqlite_url), project_id=PROJECT) as gw:
        body = orjson.dumps(
            {"token": gw.api_key, "events": [{"event": "e", "distinctId": "d-1"}, {"event": 1}]}
        )
        answers = []
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.post(
                    gw.http_url + OURS_PATH,
                    data=body,
                    headers={"Content-Type": "application/json", "Idempotency-Key": "k"},
                ) as response:
                    answers.append(
                        (
                            response.status,
                            await response.read(),
                            response.headers.get("Idempotent-Replayed"),
                        )
                    )
        assert answers[0][:2] == answers[1][:2] and answers[0][0] == 207
        assert (answers[0][2], answers[1][2]) == (None, "true")
        assert [e.id for e in await gw.stored()] == ["d-1"]


async def test_a_downgrade_forgets_the_keys_it_cannot_replay(sqlite_url: str) -> None:
    async with started(Settings(database_url=sqlite_url), project_id=PROJECT) as gw:
        body = orjson.dumps({"token": gw.api_key, "events": [{"event": "e", "distinctId": "x"}]})
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                gw.http_url + OURS_PATH,
                data=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": "k"},
            ) as response,
        ):
            assert response.status == 200
    await asyncio.to_thread(migrate.downgrade, sqlite_url, "0001")
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    engine = create_engine(Settings(database_url=sqlite_url))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(idempotency_keys.select())).all()
    finally:
        await engine.dispose()
    assert rows == []
