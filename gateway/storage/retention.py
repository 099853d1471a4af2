"""Retention of the outbox: delivered events older than a cut-off are deleted, a chunk per short
transaction, so that the table (and the SQLite file, whose freed pages are reused) stops
growing at a steady rate. An undelivered event is never deleted, however old: the relay has not
published it yet.

Event-id deduplication then holds within the retention window: an id stored, delivered and
deleted can be stored again (the field's peers dedup within a window too).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.schema import events

CHUNK = 1_000


async def purge_delivered(
    engine: AsyncEngine, older_than_us: int, *, chunk: int = CHUNK, pause_s: float = 0.0
) -> int:
    """Delete the delivered events received before ``older_than_us``, reading the outbox in
    ``seq`` order, ``chunk`` rows at a time, and deleting each chunk's in a short transaction of
    its own (``pause_s`` between them leaves the writer room); how many went. It stops at the
    first row received after the cut-off: ``seq`` follows the receive time, up to a group
    commit's disorder, which the next run catches."""
    removed, after = 0, 0
    while True:
        page = (
            select(events.c.seq, events.c.received_at, events.c.delivered_at)
            .where(events.c.seq > after)
            .order_by(events.c.seq)
            .limit(chunk)
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(page)).all()
        old = [row for row in rows if row.received_at < older_than_us]
        done = len(old) < len(rows) or len(rows) < chunk
        seqs = [row.seq for row in old if row.delivered_at is not None]
        if seqs:
            async with engine.begin() as conn:
                # Only delivered rows: the relay never un-delivers one, so they stay deletable.
                await conn.execute(
                    delete(events).where(events.c.seq.in_(seqs), events.c.delivered_at.is_not(None))
                )
            removed += len(seqs)
        if done:
            return removed
        after = rows[-1].seq
        if pause_s:
            await asyncio.sleep(pause_s)
