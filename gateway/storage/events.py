"""The event outbox: insert-once by (project, event id), export, and delivery bookkeeping.

``insert`` is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` for a whole group of events:
the database, not the process, decides what is a duplicate, so deduplication holds across
processes and machines. The caller owns the transaction (the ingestor's group commit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage.schema import events

# Rows per INSERT statement: SQLite allows 32766 bound parameters; 7 columns a row.
_PAGE = 4000


@dataclass(frozen=True, slots=True)
class EventRow:
    project_id: str
    event_id: str
    dialect: str
    event_type: str
    received_at: int
    payload: bytes


class EventStore:
    def __init__(self, engine: AsyncEngine) -> None:
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = (
            insert(events)
            .on_conflict_do_nothing(index_elements=["project_id", "event_id"])
            .returning(events.c.project_id, events.c.event_id)
        )
        self.engine = engine

    async def insert(self, conn: AsyncConnection, rows: Sequence[EventRow]) -> set[tuple[str, str]]:
        """Insert ``rows`` (unique keys); return the (project, event id) pairs that were new."""
        inserted: set[tuple[str, str]] = set()
        for start in range(0, len(rows), _PAGE):
            page = rows[start : start + _PAGE]
            result = await conn.execute(
                self._insert,
                [
                    {
                        "project_id": r.project_id,
                        "event_id": r.event_id,
                        "dialect": r.dialect,
                        "event_type": r.event_type,
                        "received_at": r.received_at,
                        "payload": r.payload,
                    }
                    for r in page
                ],
            )
            inserted.update((p, e) for p, e in result)
        return inserted

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
