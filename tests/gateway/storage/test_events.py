"""The event outbox on both backends: insert-once by (project, event id), decided by the database
(also between concurrent writers), and export in commit order."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.pb.event_pb2 import Event
from gateway.storage.engine import create_engine
from gateway.storage.events import EventStore
from tests.gateway.storage.conftest import row

P1, P2 = str(uuid.uuid4()), str(uuid.uuid4())


async def test_insert_returns_only_new_keys(engine: AsyncEngine) -> None:
    store = EventStore(engine)
    async with engine.begin() as conn:
        first = await store.insert(conn, [row(P1, "a"), row(P1, "b"), row(P2, "a")])
    assert first == {(P1, "a"), (P1, "b"), (P2, "a")}
    async with engine.begin() as conn:
        again = await store.insert(conn, [row(P1, "b"), row(P1, "c"), row(P2, "a")])
    assert again == {(P1, "c")}  # the same id in another project is another event
    assert await ids(store, P1) == ["a", "b", "c"]
    assert await ids(store, P2) == ["a"]


async def test_a_rolled_back_insert_leaves_nothing(engine: AsyncEngine) -> None:
    store = EventStore(engine)
    conn = await engine.connect()
    try:
        transaction = await conn.begin()
        assert await store.insert(conn, [row(P1, "x")]) == {(P1, "x")}
        await transaction.rollback()
    finally:
        await conn.close()
    assert [p async for p in store.export(P1)] == []
    async with engine.begin() as conn:
        assert await store.insert(conn, [row(P1, "x")]) == {(P1, "x")}


async def test_large_insert_is_paged(engine: AsyncEngine) -> None:
    store = EventStore(engine)
    rows = [row(P1, f"e{i}") for i in range(9_000)]  # more than one INSERT page
    async with engine.begin() as conn:
        assert len(await store.insert(conn, rows)) == 9_000
    async with engine.begin() as conn:
        assert await store.insert(conn, rows[::-1]) == set()


async def test_export_in_commit_order_with_since_and_limit(engine: AsyncEngine) -> None:
    store = EventStore(engine)
    for i, at in enumerate((3_000, 1_000, 2_000)):  # commit order, not receive order
        async with engine.begin() as conn:
            await store.insert(conn, [row(P1, f"e{i}", received_at=at)])
    assert await ids(store, P1) == ["e0", "e1", "e2"]
    assert await ids(store, P1, since_us=2_000) == ["e0", "e2"]
    assert await ids(store, P1, limit=2) == ["e0", "e1"]
    (first,) = [Event.FromString(p) async for p in store.export(P1, limit=1)]
    assert (first.id, first.project_id, first.received_at.ToMicroseconds()) == ("e0", P1, 3_000)


async def test_concurrent_writers_store_each_event_once(database_url: str) -> None:
    """Four engines (as four gateway processes would) insert overlapping ids at once: every id
    is new to exactly one of them."""
    engines = [create_engine(Settings(database_url=database_url)) for _ in range(4)]
    ids = [f"e{i}" for i in range(400)]

    async def writer(engine: AsyncEngine, w: int) -> set[tuple[str, str]]:
        store, won = EventStore(engine), set()
        for start in range(0, len(ids), 50):
            chunk = ids[start : start + 50]
            if w % 2:
                chunk = chunk[::-1]
            async with engine.begin() as conn:
                won |= await store.insert(conn, [row(P1, i) for i in chunk])
        return won

    try:
        results = await asyncio.gather(*(writer(e, w) for w, e in enumerate(engines)))
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(len(r) for r in results) == len(ids)
    assert set().union(*results) == {(P1, i) for i in ids}


async def ids(store: EventStore, project: str, **filters: int) -> list[str]:
    return [Event.FromString(p).id async for p in store.export(project, **filters)]
