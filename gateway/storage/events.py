"""The event outbox: insert-once by (project, event id), export, and delivery bookkeeping.

``insert_rows`` stores a whole group of events in as few statements as the database allows: the
database, not the process, decides what is a duplicate (``ON CONFLICT DO NOTHING``), so
deduplication holds across processes and machines. The caller owns the transaction (the
ingestor's group commit). The statements are written for each backend rather than compiled by
SQLAlchemy per row: this is the hot path of every accepted event.

- SQLite: multi-row ``INSERT .. VALUES (..),(..)`` in pages of up to 4096 rows, one
  ``sqlite3_step`` each (the driver releases the GIL once per page, not once per row), sent
  straight to the aiosqlite connection (one hop to its thread per page). Page sizes
  are rounded up to a few fixed sizes by repeating the last row, which conflicts with itself and
  is not stored, so the driver's statement cache holds every shape. The number of changed rows
  says whether every row was new; only when some were not is the set of new keys read back (this
  transaction's rows are the last ``seq``s: SQLite has one writer at a time).
- PostgreSQL: one ``INSERT .. SELECT .. FROM unnest($1, .., $6)`` answering the keys that were
  *not* new (usually none). An insert that conflicts with another transaction's uncommitted row
  waits for it, so two groups inserting overlapping ids in opposite orders (a client's retry
  reaching another worker) could deadlock: rows are inserted in one global order, by (project,
  event id), and keep the group's own order in the outbox through sequence numbers drawn in input
  order before the sort.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from itertools import chain, repeat
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage.schema import events

# Rows per SQLite statement: at most 32766 bound parameters, 6 a row.
_PAGE = 4096
_COLUMNS = "project_id, event_id, dialect, event_type, received_at, payload"
_PG_INSERT = f"""
WITH input AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('events', 'seq')) AS seq, t.*
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bytea[])
        WITH ORDINALITY AS t({_COLUMNS}, ord)
    ORDER BY t.ord
), inserted AS (
    INSERT INTO events (seq, {_COLUMNS})
    SELECT seq, {_COLUMNS} FROM input ORDER BY project_id, event_id
    ON CONFLICT DO NOTHING
    RETURNING project_id, event_id
)
SELECT project_id, event_id FROM input
EXCEPT ALL
SELECT project_id, event_id FROM inserted
"""


class EventRow(NamedTuple):
    """One outbox row, in the column order of the insert statements."""

    project_id: str
    event_id: str
    dialect: str
    event_type: str
    received_at: int
    payload: bytes


# What the hot path builds: a plain tuple in ``EventRow``'s order (no per-row class overhead).
# Its payload may be a bytearray, and the gRPC front, where the writer is the limit, builds one:
# CPython's sqlite3 module hands a bytearray straight to SQLite but passes every ``bytes``
# parameter through its adaptation protocol first, ~0.3 µs each on the writer's thread with the
# GIL held (binding a 1,600-row page: 1.1 -> 0.6 ms).
Row = tuple[str, str, str, str, int, bytes | bytearray]


# The first insert took the write lock for the whole transaction, and a rowid table gives each
# new row max(seq) + 1: a transaction's new rows are the ``changed`` seqs up to the last one.
_NEW_ROWS = "SELECT project_id, event_id FROM events WHERE seq > ?1 - ?2 AND seq <= ?1"


def _check_new(
    new: set[tuple[str, str]], changed: int, rows: Sequence[Row]
) -> set[tuple[str, str]]:
    if len(new) != changed or not new <= {(r[0], r[1]) for r in rows}:
        raise RuntimeError("the outbox's new rows are not this transaction's")
    return new


def _write_and_commit(
    driver: Any, pages: list[tuple[str, list[Any]]], rows: Sequence[Row]
) -> set[tuple[str, str]] | None:
    """On the aiosqlite thread: insert the pages and commit; the new keys (None: all)."""
    db: sqlite3.Connection = driver._conn
    if len(pages) == 1 and not db.in_transaction:
        # One statement is a transaction of its own: in autocommit mode it inserts and commits
        # in a single step, one release of the GIL where BEGIN, INSERT, COMMIT take three (and
        # each take back can wait behind the event loop).
        level, db.isolation_level = db.isolation_level, None
        try:
            cursor = db.execute(*pages[0])
        finally:
            db.isolation_level = level
        changed = max(cursor.rowcount, 0)
        if changed == len(rows):
            return None
        found = db.execute(_NEW_ROWS, (cursor.lastrowid, changed)).fetchall() if changed else []
        return _check_new(_keys(found), changed, rows)
    try:
        if not db.in_transaction:
            db.execute("BEGIN")
        changed = last = 0
        for statement, params in pages:
            cursor = db.execute(statement, params)
            if cursor.rowcount > 0:
                changed += cursor.rowcount
                last = cursor.lastrowid or 0
        new = None
        if changed != len(rows):
            found = db.execute(_NEW_ROWS, (last, changed)).fetchall() if changed else []
            new = _check_new(_keys(found), changed, rows)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return new


def _keys(rows: Sequence[Any]) -> set[tuple[str, str]]:
    return {(row[0], row[1]) for row in rows}


def _page_size(n: int) -> int:
    """The statement shape for ``n`` rows: a power of two up to 256, else a multiple of 256."""
    if n <= 256:
        return 1 << (n - 1).bit_length()
    return -(-n // 256) * 256


class EventStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._statements: dict[int, str] = {}

    async def insert(self, conn: AsyncConnection, rows: Sequence[Row]) -> set[tuple[str, str]]:
        """Insert ``rows`` (unique keys); return the (project, event id) pairs that were new."""
        new = await self.insert_rows(conn, rows)
        return {(r[0], r[1]) for r in rows} if new is None else new

    async def insert_rows(
        self, conn: AsyncConnection, rows: Sequence[Row]
    ) -> set[tuple[str, str]] | None:
        """Insert ``rows`` (unique keys); return the (project, event id) pairs that were new, or
        None when all of them were (the common case needs no per-row answer)."""
        if not rows:
            return None
        if self._sqlite:
            return await self._insert_sqlite(conn, rows)
        return await self._insert_postgres(conn, rows)

    @property
    def commits_in_one_call(self) -> bool:
        """Whether ``insert_committed`` saves round trips here (SQLite)."""
        return self._sqlite

    async def insert_committed(
        self, conn: AsyncConnection, rows: Sequence[Row]
    ) -> set[tuple[str, str]] | None:
        """``insert_rows`` in a transaction of its own, committed before it returns; ``conn``
        must have none open. On SQLite the inserts and the commit run in one call on the driver's
        thread: under load every hop back to the event loop waits behind the requests queued
        there, and a group commit of small requests is mostly hops.

        Where ``commits_in_one_call``, ``rows`` may repeat a key: SQLite inserts them in order,
        so a key's first row is stored and a later one conflicts as with a stored row (the
        answer is then never None)."""
        driver: Any = (await conn.get_raw_connection()).driver_connection
        run = getattr(driver, "_execute", None)  # aiosqlite's "call this on my thread"
        if not self._sqlite or run is None:
            async with conn.begin():
                return await self.insert_rows(conn, rows)
        if not rows:
            return None
        pages = list(self._sqlite_pages(rows))
        new: set[tuple[str, str]] | None = await run(_write_and_commit, driver, pages, rows)
        return new

    def _sqlite_pages(self, rows: Sequence[Row]) -> Iterator[tuple[str, list[Any]]]:
        """(statement, parameters) per page of ``rows``."""
        for start in range(0, len(rows), _PAGE):
            page = rows[start : start + _PAGE]
            size = _page_size(len(page))
            params = list(chain.from_iterable(page))
            if size > len(page):
                params.extend(chain.from_iterable(repeat(page[-1], size - len(page))))
            yield self._sqlite_statement(size), params

    async def _insert_sqlite(
        self, conn: AsyncConnection, rows: Sequence[Row]
    ) -> set[tuple[str, str]] | None:
        # Straight to the aiosqlite connection, inside the caller's transaction (the sqlite3
        # driver begins it before the first insert): one hop to its thread per page, where
        # SQLAlchemy's cursor adaptation would take three.
        driver: Any = (await conn.get_raw_connection()).driver_connection
        changed = last = 0
        for statement, params in self._sqlite_pages(rows):
            cursor = await driver.execute(statement, params)
            if cursor.rowcount > 0:
                changed += cursor.rowcount
                last = cursor.lastrowid
        if changed == len(rows):
            return None
        if not changed:
            return set()
        found = await driver.execute_fetchall(_NEW_ROWS, (last, changed))
        return _check_new(_keys(list(found)), changed, rows)

    def _sqlite_statement(self, size: int) -> str:
        statement = self._statements.get(size)
        if statement is None:
            values = ",".join(repeat("(?,?,?,?,?,?)", size))
            statement = f"INSERT INTO events ({_COLUMNS}) VALUES {values} ON CONFLICT DO NOTHING"
            self._statements[size] = statement
        return statement

    async def _insert_postgres(
        self, conn: AsyncConnection, rows: Sequence[Row]
    ) -> set[tuple[str, str]] | None:
        columns = tuple(list(column) for column in zip(*rows, strict=True))
        result = await conn.exec_driver_sql(_PG_INSERT, columns)
        old = _keys(result.all())
        if not old:
            return None
        return {(r[0], r[1]) for r in rows} - old

    async def export(
        self, project_id: str, *, since_us: int | None = None, limit: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stored payloads of ``project_id`` in commit order."""
        query = select(events.c.payload).where(events.c.project_id == project_id)
        if since_us is not None:
            query = query.where(events.c.received_at >= since_us)
        query = query.order_by(events.c.seq)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            result = await conn.stream(query)
            async for (payload,) in result:
                yield payload
