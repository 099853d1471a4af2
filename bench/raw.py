"""The raw limit of ``eventgw bench``: the gateway's stored events written straight to the database.

The same serialized events the gateway stores, in batches of ``GRPC_BATCH`` with one commit per
batch and the same durability, with no gateway in between: into SQLite (WAL, the same
``synchronous``) in a table identical to the outbox, and on PostgreSQL into a copy of the outbox
table in the bench's own database.
"""

from __future__ import annotations

import sqlite3
import time

from bench.payloads import GRPC_BATCH, EventIds, stored_payload_tail, stored_rows
from bench.window import Tally

_RAW_INSERT = (
    "INSERT INTO events (project_id, event_id, dialect, event_type, received_at, payload)"
    " VALUES ({})"
)


def outbox_ddl() -> list[str]:
    """``CREATE`` statements of a table identical to the outbox, for the raw SQLite limit."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    from gateway.storage.schema import events

    dialect = sqlite.dialect()
    ddl = [str(CreateTable(events).compile(dialect=dialect))]
    ddl += [str(CreateIndex(index).compile(dialect=dialect)) for index in events.indexes]
    return ddl


def raw_sqlite(path: str, ddl: list[str], project_id: str, seconds: float, sync: str) -> Tally:
    """Batches of ``GRPC_BATCH`` events inserted with ``executemany`` into a table identical to
    the outbox (same indexes), WAL, ``synchronous=sync``, one commit per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        for statement in ddl:
            conn.execute(statement)
        sql = _RAW_INSERT.format(",".join("?" * 6))
        tail = stored_payload_tail(project_id)
        ids = EventIds("raw-")
        tally = Tally()
        started = time.perf_counter()
        deadline = started + seconds
        while (t0 := time.perf_counter()) < deadline:
            rows = stored_rows(ids.take(GRPC_BATCH), project_id, tail)
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            tally.latencies_ms.append((time.perf_counter() - t0) * 1000)
            tally.requests += 1
            tally.events += len(rows)
        tally.elapsed_s = time.perf_counter() - started
        return tally
    finally:
        conn.close()


async def raw_postgres(dsn: str, project_id: str, seconds: float) -> Tally:
    """The same on PostgreSQL (asyncpg ``executemany``, one transaction per batch, default
    ``synchronous_commit``) into ``events_raw``, created ``LIKE events INCLUDING ALL``."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE events_raw (LIKE events INCLUDING ALL)")
        sql = _RAW_INSERT.replace("events", "events_raw").format(
            ",".join(f"${n}" for n in range(1, 7))
        )
        tail = stored_payload_tail(project_id)
        ids = EventIds("raw-")
        tally = Tally()
        started = time.perf_counter()
        deadline = started + seconds
        while (t0 := time.perf_counter()) < deadline:
            rows = stored_rows(ids.take(GRPC_BATCH), project_id, tail)
            async with conn.transaction():
                await conn.executemany(sql, rows)
            tally.latencies_ms.append((time.perf_counter() - t0) * 1000)
            tally.requests += 1
            tally.events += len(rows)
        tally.elapsed_s = time.perf_counter() - started
        await conn.execute("DROP TABLE events_raw")
        return tally
    finally:
        await conn.close()
