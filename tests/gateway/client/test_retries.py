"""Each retry class against a real gateway, and each request error surfacing unretried.

Retried with the same batch under the same idempotency key until it is answered: the rate limit
(``RESOURCE_EXHAUSTED`` with ``RetryInfo``), the writer queue full (``UNAVAILABLE``), the key in
flight (``ABORTED``), a deadline run out (``DEADLINE_EXCEEDED``, reported once the attempts run
out). Reported, never retried: ``UNAUTHENTICATED``, ``PERMISSION_DENIED``,
``INVALID_ARGUMENT``, ``FAILED_PRECONDITION``; over unary calls and over ``SubmitStream``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.client import AsyncEventClient, Counters, Rejection, track_event
from gateway.client.events import batch_request, encode
from gateway.config import Settings
from gateway.pb.event_pb2 import Event
from gateway.rpc.batch import Batch
from gateway.rpc.translate import translate
from gateway.storage.engine import create_engine
from gateway.storage.idempotency import IdempotencyStore
from gateway.storage.tenants import TenantStore
from tests.harness import Gateway, started

TRANSPORTS = ["unary", "stream"]


async def new_key(gateway: Gateway, **kwargs: Any) -> str:
    engine = create_engine(Settings(database_url=gateway.settings.database_url))
    try:
        _, secret = await TenantStore(engine).create_key(gateway.project_id, **kwargs)
        return secret
    finally:
        await engine.dispose()


async def send_events(
    client: AsyncEventClient, events: list[Event], flush_within: float = 30
) -> Counters:
    """Send ``events`` through ``client``, flushed within ``flush_within`` seconds, and close it."""
    async with client:
        for event in events:
            await client.send(event)
        assert await client.flush(timeout=flush_within)
    return client.counters


async def send_all(client: AsyncEventClient, n: int, prefix: str) -> list[str]:
    events = [track_event("order_completed", event_id=f"{prefix}-{i}") for i in range(n)]
    await send_events(client, events, flush_within=60)
    return [event.id for event in events]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rate_limit_is_retried_after_its_retry_info(gateway: Gateway, transport: str) -> None:
    key = await new_key(gateway, rate_limit="5/s")
    client = AsyncEventClient(
        gateway.grpc_target, key, batch_size=10, max_in_flight=4, transport=transport
    )
    ids = await send_all(client, 150, "rl")
    counters = client.counters
    assert counters.retried > 0, "the rate limit never refused a batch"
    assert (counters.accepted, counters.rejected) == (150, 0)
    assert sorted(e.id for e in await gateway.stored()) == sorted(ids)


@pytest.fixture
async def tiny_queue(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'eventgw.db'}",
        queue_max_events=40,
        queue_wait_seconds=0.01,
        commit_max_events=40,
    )
    async with started(settings) as gateway:
        yield gateway


async def test_writer_queue_full_is_retried(tiny_queue: Gateway) -> None:
    client = AsyncEventClient(
        tiny_queue.grpc_target, tiny_queue.api_key, batch_size=20, max_in_flight=64
    )
    ids = await send_all(client, 4000, "q")
    counters = client.counters
    assert counters.retried > 0, "the writer queue never refused a batch"
    assert (counters.accepted, counters.rejected, counters.duplicates) == (4000, 0, 0)
    stored = [e.id for e in await tiny_queue.stored()]
    assert len(stored) == len(set(stored)) and set(stored) == set(ids)


@pytest.fixture
async def short_locks(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'eventgw.db'}", idempotency_lock_timeout_seconds=1.5
    )
    async with started(settings) as gateway:
        yield gateway


async def test_key_in_flight_is_retried_until_it_is_free(short_locks: Gateway) -> None:
    # The batch the client will form, held in flight as by a process that died with it.
    events = [
        track_event("order_completed", event_id=f"busy-{i}", occurred_at=1.8e9) for i in (0, 1)
    ]
    request = Batch.parse(batch_request("busy-key", [encode(e) for e in events]))
    fingerprint = translate(request, short_locks.project_id, max_events=10).fingerprint
    engine = create_engine(Settings(database_url=short_locks.settings.database_url))
    try:
        store = IdempotencyStore(engine, retention_s=60, lock_timeout_s=30)
        await store.claim(
            short_locks.project_id, "busy-key", endpoint="grpc SubmitBatch", fingerprint=fingerprint
        )
    finally:
        await engine.dispose()

    client = AsyncEventClient(
        short_locks.grpc_target, short_locks.api_key, batch_size=2, key_factory=lambda: "busy-key"
    )
    counters = await send_events(client, events)
    assert counters.retried >= 2, "the key in flight never refused the batch"
    assert (counters.accepted, counters.rejected) == (2, 0)
    assert sorted(e.id for e in await short_locks.stored()) == ["busy-0", "busy-1"]


async def test_a_deadline_run_out_is_retried_then_reported_and_the_key_kept(
    gateway: Gateway,
) -> None:
    events = [track_event("order_completed", event_id=f"late-{i}") for i in range(3)]
    late: list[Rejection] = []
    client = AsyncEventClient(
        gateway.grpc_target,
        gateway.api_key,
        batch_size=3,
        timeout=1e-4,  # no attempt can be answered in time
        max_attempts=3,
        on_rejected=late.extend,
        key_factory=lambda: "late-key",
    )
    counters = await send_events(client, events)
    assert (counters.retried, counters.rejected) == (6, 3)  # two retries of three events
    assert {r.code for r in late} == {"DEADLINE_EXCEEDED"}
    # Whatever the timed-out attempts stored, the batch sent again under its key is stored once.
    again = AsyncEventClient(
        gateway.grpc_target, gateway.api_key, batch_size=3, key_factory=lambda: "late-key"
    )
    resent = await send_events(again, events)
    assert resent.accepted + resent.duplicates == 3
    assert sorted(e.id for e in await gateway.stored()) == ["late-0", "late-1", "late-2"]


async def refused(
    gateway: Gateway, key: str, n: int, **options: Any
) -> tuple[Any, list[Rejection]]:
    rejected: list[Rejection] = []
    client = AsyncEventClient(gateway.grpc_target, key, on_rejected=rejected.extend, **options)
    async with client:
        for i in range(n):
            await client.track("order_completed", event_id=f"r-{i}")
        assert await client.flush(timeout=30)
    return client.counters, rejected


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unknown_key_is_reported_unauthenticated(gateway: Gateway, transport: str) -> None:
    counters, rejected = await refused(gateway, "egw_nope", 30, batch_size=10, transport=transport)
    assert (counters.rejected, counters.accepted, counters.retried) == (30, 0, 0)
    assert {r.code for r in rejected} == {"UNAUTHENTICATED"}
    assert sorted(r.event_id for r in rejected) == sorted(f"r-{i}" for i in range(30))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_key_without_the_scope_is_reported_permission_denied(
    gateway: Gateway, transport: str
) -> None:
    key = await new_key(gateway, scopes=("read:events",))
    counters, rejected = await refused(gateway, key, 20, batch_size=10, transport=transport)
    assert (counters.rejected, counters.retried) == (20, 0)
    assert {r.code for r in rejected} == {"PERMISSION_DENIED"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_invalid_request_is_reported_invalid_argument(
    gateway: Gateway, transport: str
) -> None:
    counters, rejected = await refused(
        gateway, gateway.api_key, 5, key_factory=lambda: "k" * 300, transport=transport
    )
    assert (counters.rejected, counters.retried) == (5, 0)
    assert {r.code for r in rejected} == {"INVALID_ARGUMENT"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_key_reused_for_another_batch_is_failed_precondition(
    gateway: Gateway, transport: str
) -> None:
    counters, rejected = await refused(
        gateway,
        gateway.api_key,
        3,
        batch_size=1,
        max_in_flight=1,
        stream_window=1,
        key_factory=lambda: "one-key",
        transport=transport,
    )
    assert (counters.accepted, counters.rejected, counters.retried) == (1, 2, 0)
    assert [(r.event_id, r.code) for r in rejected] == [
        ("r-1", "FAILED_PRECONDITION"),
        ("r-2", "FAILED_PRECONDITION"),
    ]
    assert [e.id for e in await gateway.stored()] == ["r-0"]


async def test_rejected_events_are_reported_by_index_and_the_rest_stored(gateway: Gateway) -> None:
    rejected: list[Rejection] = []
    async with AsyncEventClient(
        gateway.grpc_target, gateway.api_key, on_rejected=rejected.extend
    ) as client:
        await client.track("ok", event_id="good-0")
        await client.track("", event_id="bad-1")
        await client.track("ok", event_id="x" * 600)
    counters = client.counters
    assert (counters.accepted, counters.rejected) == (1, 2)
    assert [(r.index, r.code, r.field) for r in rejected] == [
        (1, "missing_field", "name"),
        (2, "invalid_field", "id"),
    ]
