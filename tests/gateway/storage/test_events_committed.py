"""``EventStore.insert_committed``, the writer's one-call path (on SQLite: inserts and commit in
one hop to the driver's thread, a single autocommit statement when the group fits one page): it
answers exactly the new keys, commits them, and leaves nothing behind when it fails."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.pb.event_pb2 import Event
from gateway.storage.events import EventStore
from tests.gateway.storage.conftest import row

P = str(uuid.uuid4())


async def stored_ids(store: EventStore) -> list[str]:
    return [Event.FromString(p).id async for p in store.export(P)]


@pytest.mark.parametrize("n", [1, 3, 300, 5000])  # one page, and several (4096 rows a page)
async def test_new_keys_are_answered_and_committed(engine: AsyncEngine, n: int) -> None:
    store = EventStore(engine)
    async with engine.connect() as conn:
        assert await store.insert_committed(conn, [row(P, f"a{i}") for i in range(n)]) is None
        again = [row(P, f"a{i}") for i in range(0, n, 2)] + [row(P, "new-1"), row(P, "new-2")]
        assert await store.insert_committed(conn, again) == {(P, "new-1"), (P, "new-2")}
        assert await store.insert_committed(conn, again) == set()
    ids = await stored_ids(store)
    assert len(ids) == n + 2 and set(ids) == {f"a{i}" for i in range(n)} | {"new-1", "new-2"}


async def test_a_failed_group_leaves_nothing(engine: AsyncEngine) -> None:
    store = EventStore(engine)
    broken = (P, "bad", "grpc", "track", 0, None)  # payload is NOT NULL
    async with engine.connect() as conn:
        with pytest.raises(Exception, match=r"(?i)not null|null value"):
            await store.insert_committed(conn, [row(P, "x"), broken])  # type: ignore[list-item]
        assert await store.insert_committed(conn, [row(P, "y")]) is None
    assert await stored_ids(store) == ["y"]


async def test_a_repeated_key_is_stored_once_from_its_first_row(engine: AsyncEngine) -> None:
    store = EventStore(engine)
    if not store.commits_in_one_call:
        pytest.skip("only the one-call path takes repeated keys (the ingestor dedups first)")
    first, again = row(P, "a"), row(P, "a")
    again = (*again[:5], b"a later payload")
    async with engine.connect() as conn:
        got = await store.insert_committed(conn, [first, row(P, "b"), again, row(P, "c")])
        assert got == {(P, "a"), (P, "b"), (P, "c")}  # not None: a row was not stored
    payloads = [payload async for payload in store.export(P)]
    assert payloads[0] == first[5] and await stored_ids(store) == ["a", "b", "c"]
