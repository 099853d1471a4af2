"""The SQLite group commit's own connection: a plain ``sqlite3`` connection on a thread of its own.

On SQLite a whole group commit (the outbox insert, the results stored with idempotency keys,
the commit) is one call to ``SqliteWriter.run``: one hop from the event loop to this thread and
one back per group. Under load every hop back to the event loop waits behind the requests queued
there, so a group of small requests must not be a series of hops; and the thread needs the GIL
only between SQLite's steps. The connection is set up as the engine's are
(``engine_sqlite_pragmas``: WAL, the engine's ``synchronous``, so with FULL a commit is synced
before ``run`` returns). After a failed call the connection is closed; the next opens another.

``SqliteSql`` is a SQLAlchemy Core statement compiled once for SQLite, so the SQL run here is the
schema's and the statements' one definition, not a second copy of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.dialects import sqlite
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


class SqliteWriter:
    """Runs calls one at a time on its thread, on its connection to the database at ``path``."""

    def __init__(self, path: str, pragmas: Sequence[str], *, name: str = "eventgw-sqlite-writer"):
        self.path = path
        self.pragmas = tuple(pragmas)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._db: sqlite3.Connection | None = None
        # What a caller (and a test) can see of the work done here: the calls that returned, and
        # the thread that ran them.
        self.calls = 0
        self.thread_id: int | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the writer's thread. The connection is in autocommit mode:
        ``work`` begins and commits its own transaction; one it leaves open, or one open when
        it raises, is rolled back."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    async def close(self) -> None:
        """Close the connection (after the calls already queued) and end the thread."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._discard)
        finally:
            await asyncio.to_thread(self._executor.shutdown)

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
            self.thread_id = threading.get_ident()
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
