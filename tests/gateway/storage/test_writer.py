"""The SQLite group commit's own connection (``SqliteWriter``) and its transaction
(``commit_rows``): new keys are answered exactly and committed, a key repeated in a group is
stored once from its first row, what runs with the rows commits with them or not at all, a
failed call leaves nothing and the next one succeeds, the connection is set up as the engine's;
and the group committer takes this path on a SQLite file, every group on the writer's thread,
none through the engine."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrate
from gateway.commit import GroupCommitter, Job, WriterLimits
from gateway.config import Settings
from gateway.model import Status
from gateway.pb.event_pb2 import Event
from gateway.storage.engine import create_engine, engine_sqlite_pragmas, sqlite_file
from gateway.storage.events import EventStore, NewKeys, Row, commit_rows
from gateway.storage.idempotency import Claim, IdempotencyStore
from gateway.storage.writer import SqliteWriter
from tests.gateway.storage.conftest import row

P = str(uuid.uuid4())
PRAGMAS = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys", "wal_autocheckpoint")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'writer.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(database_url=sqlite_url))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def writer(sqlite_engine: AsyncEngine) -> AsyncIterator[SqliteWriter]:
    path = sqlite_file(sqlite_engine)
    assert path is not None
    writer = SqliteWriter(path, await engine_sqlite_pragmas(sqlite_engine))
    try:
        yield writer
    finally:
        await writer.close()


async def stored_ids(engine: AsyncEngine) -> list[str]:
    return [Event.FromString(p).id async for p in EventStore(engine).export(P)]


async def commit(writer: SqliteWriter, rows: list[Row]) -> NewKeys:
    return await writer.run(lambda db: commit_rows(db, rows))


@pytest.mark.parametrize("n", [1, 3, 300, 5000])  # one page, and several (4096 rows a page)
async def test_new_keys_are_answered_and_committed(
    sqlite_engine: AsyncEngine, writer: SqliteWriter, n: int
) -> None:
    assert await commit(writer, [row(P, f"a{i}") for i in range(n)]) is None
    again = [row(P, f"a{i}") for i in range(0, n, 2)] + [row(P, "new-1"), row(P, "new-2")]
    assert await commit(writer, again) == {(P, "new-1"), (P, "new-2")}
    assert await commit(writer, again) == set()
    ids = await stored_ids(sqlite_engine)
    assert len(ids) == n + 2 and set(ids) == {f"a{i}" for i in range(n)} | {"new-1", "new-2"}
    assert writer.calls == 3


async def test_a_repeated_key_is_stored_once_from_its_first_row(
    sqlite_engine: AsyncEngine, writer: SqliteWriter
) -> None:
    first, again = row(P, "a"), row(P, "a")
    again = again._replace(payload=b"a later payload")
    got = await commit(writer, [first, row(P, "b"), again, row(P, "c")])
    assert got == {(P, "a"), (P, "b"), (P, "c")}  # not None: a row was not stored
    payloads = [payload async for payload in EventStore(sqlite_engine).export(P)]
    assert payloads[0] == first.payload and await stored_ids(sqlite_engine) == ["a", "b", "c"]


async def test_a_failed_group_leaves_nothing_and_the_next_one_commits(
    sqlite_engine: AsyncEngine, writer: SqliteWriter
) -> None:
    broken = (P, "bad", "grpc", "track", 0, None)  # payload is NOT NULL
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        await commit(writer, [row(P, "x"), broken])  # type: ignore[list-item]
    assert await commit(writer, [row(P, "y")]) is None
    assert await stored_ids(sqlite_engine) == ["y"]


@pytest.mark.parametrize("n", [1, 5000])
async def test_what_runs_with_the_rows_commits_with_them_or_not_at_all(
    sqlite_engine: AsyncEngine, writer: SqliteWriter, n: int
) -> None:
    seen: list[NewKeys] = []

    def then(new: NewKeys) -> None:
        seen.append(new)
        raise RuntimeError("refused after the insert")

    rows = [row(P, f"r{i}") for i in range(n)]
    with pytest.raises(RuntimeError, match="refused"):
        await writer.run(lambda db: commit_rows(db, rows, then))
    assert seen == [None] and await stored_ids(sqlite_engine) == []
    assert await writer.run(lambda db: commit_rows(db, rows, seen.append)) is None
    assert seen == [None, None] and len(await stored_ids(sqlite_engine)) == n


async def test_the_connection_is_set_up_as_the_engines(sqlite_url: str) -> None:
    engine = create_engine(Settings(database_url=sqlite_url, sqlite_synchronous="NORMAL"))
    path = sqlite_file(engine)
    assert path is not None
    writer = SqliteWriter(path, await engine_sqlite_pragmas(engine))
    try:
        async with engine.connect() as conn:
            expected = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one() for name in PRAGMAS
            ]
        got = await writer.run(
            lambda db: [db.execute(f"PRAGMA {name}").fetchone()[0] for name in PRAGMAS]
        )
        assert got == expected and got[:2] == ["wal", 1]  # synchronous NORMAL is 1
    finally:
        await writer.close()
        await engine.dispose()


async def test_group_commits_run_on_the_writers_own_thread_and_connection(
    sqlite_engine: AsyncEngine,
) -> None:
    idempotency = IdempotencyStore(sqlite_engine, retention_s=3600, lock_timeout_s=30)
    commits: list[int] = []
    committer = GroupCommitter(
        EventStore(sqlite_engine),
        idempotency,
        WriterLimits(),
        on_commit=lambda jobs, _n, _s: commits.append(jobs),
    )
    await committer.start()
    try:
        claim = await idempotency.claim(P, "k", endpoint="grpc SubmitBatch", fingerprint="f")
        assert isinstance(claim, Claim)
        # From here on, every statement the engine's connections run: none may write the outbox
        # or complete the key, so the generic path (an AsyncConnection of the engine) is not taken.
        through_engine: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            through_engine.append(statement)

        event.listen(sqlite_engine.sync_engine, "before_cursor_execute", seen)
        plain = Job(rows=[row(P, "a"), row(P, "b")], size=2)
        keyed = Job(rows=[row(P, "b"), row(P, "c")], size=2, claim=claim)
        results = await asyncio.gather(committer.commit(plain), committer.commit(keyed))
        many = await committer.commit(Job(rows=[row(P, f"m{i}") for i in range(5000)], size=5000))
    finally:
        await committer.stop()
    assert [[o.status for o in r] for r in results] == [
        [Status.ACCEPTED, Status.ACCEPTED],
        [Status.DUPLICATE, Status.ACCEPTED],
    ]
    assert many.accepted == 5000
    assert not [s for s in through_engine if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    (writer,) = committer.sqlite_writers
    assert writer.calls == len(commits) >= 2  # every group, and only groups
    assert writer.thread_id not in (None, threading.get_ident())
    replay = await idempotency.lookup(P, "k")
    assert replay is not None and replay.result == results[1].encode()
    assert sorted(await stored_ids(sqlite_engine)) == sorted(
        ["a", "b", "c"] + [f"m{i}" for i in range(5000)]
    )
