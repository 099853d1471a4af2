"""The SQLite group commit's own connection: a plain ``sqlite3`` connection on a thread of its own.

On SQLite a whole group commit (the outbox insert, the results stored with idempotency keys,
the commit) is one call to ``SqliteWriter.run``: one hop from the event loop to this thread and
one back per group. Under load every hop back to the event loop waits behind the requests queued
there, so a group of small requests must not be a series of hops; and the thread needs the GIL
only between SQLite's steps. The connection is set up as the engine's are
(``engine_sqlite_pragmas``: WAL, the engine's ``synchronous``, so with FULL a commit is synced
before ``run`` returns). After a failed call the connection is closed; the next opens another.

``SqliteSql`` is a SQLAlchemy Core statement compiled once for SQLite, so the SQL run here is the
schema's and the statements' one definition, not a second copy of them; ``SqliteRowsInsert`` is
SQLAlchemy's insert of one row of a table, compiled once and its ``VALUES`` group repeated for as
many rows as a statement carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql import ClauseElement

T = TypeVar("T")

_NAMED = sqlite.dialect(paramstyle="named")


class SqliteSql:
    """``statement`` compiled for SQLite with named parameters; ``params`` adds the values the
    statement itself carries (literals SQLAlchemy binds, such as ``.values(state="x")``)."""

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_NAMED)
        self.sql = str(compiled)
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {**self._defaults, **values}


class SqliteRowsInsert:
    """``INSERT INTO table (columns) VALUES (..), (..) ON CONFLICT DO NOTHING`` for SQLite, made
    from SQLAlchemy's statement for one row: ``sql(n)`` binds ``n`` rows' values positionally,
    row after row, each in the order of ``self.columns`` (the table's order of the columns
    given). A statement is made once per row count."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        statement = (
            sqlite_insert(table)
            .values({name: bindparam(name) for name in columns})
            .on_conflict_do_nothing()
        )
        compiled = statement.compile(dialect=sqlite.dialect())
        self.columns = tuple(compiled.positiontup or ())
        group = f"({', '.join('?' * len(self.columns))})"
        head, values, tail = str(compiled).partition(f" VALUES {group}")
        if not values:
            raise RuntimeError(f"unexpected insert: {compiled}")
        self._head, self._group, self._tail = f"{head} VALUES ", group, tail
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            sql = self._sql[rows] = self._head + ", ".join(repeat(self._group, rows)) + self._tail
        return sql


class SqliteWriter:
    """Runs calls one at a time, in order, on its thread, on its connection to the database at
    ``path``. The thread is plain (a queue it reads, an answer it hands back to the caller's
    loop): any Python it runs besides the calls would need the GIL beside the event loop."""

    def __init__(self, path: str, pragmas: Sequence[str], *, name: str = "eventgw-sqlite-writer"):
        self.path = path
        self.pragmas = tuple(pragmas)
        self.name = name
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        # What a caller (and a test) can see of the work done here: the calls that returned, and
        # the thread that ran them.
        self.calls = 0
        self.thread_id: int | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the writer's thread. The connection is in autocommit mode:
        ``work`` begins and commits its own transaction; one it leaves open, or one open when
        it raises, is rolled back."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((work, future))
        return await future

    async def close(self) -> None:
        """Close the connection (after the calls already queued) and end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._calls.put(None)
            await asyncio.to_thread(thread.join)

    def _serve(self) -> None:
        self.thread_id = threading.get_ident()
        while (call := self._calls.get()) is not None:
            work, future = call
            try:
                result = self._call(work)
            except BaseException as exc:
                answer: tuple[Any, ...] = (_fail, future, exc)
            else:
                answer = (_answer, future, result)
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: no one waits
                future.get_loop().call_soon_threadsafe(*answer)
        self._discard()

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        try:
            result = work(conn)
            if conn.in_transaction:
                raise RuntimeError("a writer call left its transaction open")
        except BaseException:
            self._discard()
            raise
        self.calls += 1
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                for pragma in self.pragmas:
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
            self._db = conn
        return self._db

    def _discard(self) -> None:
        conn, self._db = self._db, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.rollback()
            with contextlib.suppress(sqlite3.Error):
                conn.close()


_Call = tuple[Callable[[sqlite3.Connection], T], "asyncio.Future[T]"]


def _answer(future: asyncio.Future[T], result: T) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
