"""The event outbox: insert-once by (project, event id), export, and delivery bookkeeping.

``insert_rows`` stores a whole group of events in as few statements as the database allows: the
database, not the process, decides what is a duplicate (``ON CONFLICT DO NOTHING``), so
deduplication holds across processes and machines. The caller owns the transaction (the
ingestor's group commit). This is the hot path of every accepted event.

- SQLite: multi-row ``INSERT .. VALUES (..),(..)`` in pages of up to 4096 rows, one
  ``sqlite3_step`` each (the driver releases the GIL once per page, not once per row, and each
  take back can wait behind the event loop). The statement is SQLAlchemy's own for one row,
  compiled once, its ``VALUES`` group repeated. Page sizes are rounded up to a few fixed sizes
  by repeating the last row, which conflicts with itself and is not stored, so the driver's
  statement cache holds every shape. The number of changed rows says whether every row was new;
  only when some were not is the set of new keys read back (this transaction's rows are the last
  ``seq``s: SQLite has one writer at a time). ``commit_rows`` is the group commit's transaction
  on the writer's own connection (``gateway.storage.writer``); ``insert_rows`` runs the same
  statements through the engine.
- PostgreSQL: one ``INSERT .. SELECT .. FROM unnest($1, .., $6)`` answering the keys that were
  *not* new (usually none). An insert that conflicts with another transaction's uncommitted row
  waits for it, so two groups inserting overlapping ids in opposite orders (a client's retry
  reaching another worker) could deadlock: rows are inserted in one global order, by (project,
  event id), and keep the group's own order in the outbox through sequence numbers drawn in input
  order before the sort.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from itertools import chain, repeat
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage.schema import events
from gateway.storage.writer import SqliteRowsInsert, SqliteSql

# Rows per SQLite statement: at most 32766 bound parameters, 6 a row.
_PAGE = 4096
# The PostgreSQL statement is its own (``unnest`` of one array per column, a CTE, ``EXCEPT ALL``).
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
NewKeys = set[tuple[str, str]] | None  # the keys a group stored; None: all of them


_INSERT = SqliteRowsInsert(events, EventRow._fields)
if _INSERT.columns != EventRow._fields:
    raise RuntimeError("the outbox insert does not bind the row's fields in order")

# The first insert took the write lock for the whole transaction, and a rowid table gives each
# new row max(seq) + 1: a transaction's new rows are the ``changed`` seqs up to the last one.
_NEW_ROWS = SqliteSql(
    select(events.c.project_id, events.c.event_id).where(
        (events.c.seq > bindparam("last") - bindparam("changed"))
        & (events.c.seq <= bindparam("last"))
    )
)


def _check_new(
    new: set[tuple[str, str]], changed: int, rows: Sequence[Row]
) -> set[tuple[str, str]]:
    if len(new) != changed or not new <= {(r[0], r[1]) for r in rows}:
        raise RuntimeError("the outbox's new rows are not this transaction's")
    return new


def _keys(rows: Iterable[Any]) -> set[tuple[str, str]]:
    return {(row[0], row[1]) for row in rows}


def _page_size(n: int) -> int:
    """The statement shape for ``n`` rows: a power of two up to 256, else a multiple of 256."""
    if n <= 256:
        return 1 << (n - 1).bit_length()
    return -(-n // 256) * 256


def _sqlite_pages(rows: Sequence[Row]) -> Iterator[tuple[str, list[Any]]]:
    """(statement, parameters) per page of ``rows``."""
    for start in range(0, len(rows), _PAGE):
        page = rows[start : start + _PAGE]
        size = _page_size(len(page))
        params = list(chain.from_iterable(page))
        if size > len(page):
            params.extend(chain.from_iterable(repeat(page[-1], size - len(page))))
        yield _INSERT.sql(size), params


def _new_sqlite(db: sqlite3.Connection, changed: int, last: int, rows: Sequence[Row]) -> NewKeys:
    if changed == len(rows):
        return None
    if not changed:
        return set()
    found = db.execute(_NEW_ROWS.sql, {"last": last, "changed": changed}).fetchall()
    return _check_new(_keys(found), changed, rows)


def commit_rows(
    db: sqlite3.Connection,
    rows: Sequence[Row],
    then: Callable[[NewKeys], None] | None = None,
) -> NewKeys:
    """On the SQLite writer's connection (autocommit mode): insert ``rows``, run ``then(new)``
    in the same transaction (the results stored with the events), commit; the new keys.

    ``rows`` may repeat a key: SQLite inserts them in order, so a key's first row is stored and
    a later one conflicts as with a stored row (the answer is then never None)."""
    if not rows:
        if then is not None:
            with transaction(db):
                then(None)
        return None
    pages = list(_sqlite_pages(rows))
    if len(pages) == 1 and then is None:
        # One statement is a transaction of its own: in autocommit mode it inserts and commits
        # in a single step, one release of the GIL where BEGIN, INSERT, COMMIT take three.
        cursor = db.execute(*pages[0])
        return _new_sqlite(db, max(cursor.rowcount, 0), cursor.lastrowid or 0, rows)
    with transaction(db):
        new = insert_pages(db, rows, pages)
        if then is not None:
            then(new)
    return new


def insert_pages(
    db: sqlite3.Connection, rows: Sequence[Row], pages: Sequence[tuple[str, list[Any]]] = ()
) -> NewKeys:
    """Insert ``rows`` (in ``pages``, when already made) inside the caller's ``transaction``
    on the SQLite writer's connection; the new keys."""
    changed = last = 0
    for statement, params in pages or _sqlite_pages(rows):
        cursor = db.execute(statement, params)
        if cursor.rowcount > 0:
            changed += cursor.rowcount
            last = cursor.lastrowid or 0
    return _new_sqlite(db, changed, last, rows)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE: the write lock first (waiting for it under busy_timeout), so the transaction
    # never has to upgrade a read to a write another connection got to first.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


class EventStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    async def insert(self, conn: AsyncConnection, rows: Sequence[Row]) -> set[tuple[str, str]]:
        """Insert ``rows`` (unique keys); return the (project, event id) pairs that were new."""
        new = await self.insert_rows(conn, rows)
        return {(r[0], r[1]) for r in rows} if new is None else new

    async def insert_rows(self, conn: AsyncConnection, rows: Sequence[Row]) -> NewKeys:
        """Insert ``rows`` (unique keys) in the caller's transaction; return the (project,
        event id) pairs that were new, or None when all of them were (the common case needs no
        per-row answer)."""
        if not rows:
            return None
        if self._sqlite:
            return await self._insert_sqlite(conn, rows)
        return await self._insert_postgres(conn, rows)

    async def _insert_sqlite(self, conn: AsyncConnection, rows: Sequence[Row]) -> NewKeys:
        changed = last = 0
        for statement, params in _sqlite_pages(rows):
            result = await conn.exec_driver_sql(statement, tuple(params))
            if result.rowcount > 0:
                changed += result.rowcount
                last = result.lastrowid
        if changed == len(rows):
            return None
        if not changed:
            return set()
        found = await conn.exec_driver_sql(_NEW_ROWS.sql, {"last": last, "changed": changed})
        return _check_new(_keys(found.all()), changed, rows)

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
