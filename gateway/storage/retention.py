"""Retention of the outbox: delivered events older than a cut-off are deleted (``purge_delivered``,
on ``purge_older``, which the failed-events table's retention uses too), a chunk per short
transaction, so that the table (and the SQLite file, whose freed pages are reused) stops
growing at a steady rate. An undelivered event is never deleted, however old: the relay has not
published it yet.

Event-id deduplication then holds within the retention window: an id stored, delivered and
deleted can be stored again (the field's peers dedup within a window too).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import ColumnElement, Table, delete, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.schema import events

CHUNK = 1_000


async def purge_delivered(
    engine: AsyncEngine, older_than_us: int, *, chunk: int = CHUNK, pause_s: float = 0.0
) -> int:
    """Delete the delivered events received before ``older_than_us`` (``purge_older``; the
    relay never un-delivers a row, so one chosen stays deletable); how many went."""
    delivered = events.c.delivered_at.is_not(None)
    return await purge_older(
        engine, events, older_than_us, only=delivered, chunk=chunk, pause_s=pause_s
    )


async def purge_older(
    engine: AsyncEngine,
    table: Table,
    older_than_us: int,
    *,
    only: ColumnElement[bool] | None = None,
    chunk: int = CHUNK,
    pause_s: float = 0.0,
) -> int:
    """Delete the rows of ``table`` (a ``seq`` key, a ``received_at`` time) received before
    ``older_than_us`` and, when given, matching ``only``: reading the table in ``seq`` order,
    ``chunk`` rows at a time, and deleting each chunk's in a short transaction of its own
    (``pause_s`` between them leaves the writer room); how many went. It stops at the first row
    received after the cut-off: ``seq`` follows the receive time, up to a group commit's
    disorder, which the next run catches."""
    deletable = only if only is not None else true()
    removed, after = 0, 0
    while True:
        page = (
            select(table.c.seq, table.c.received_at, deletable.label("deletable"))
            .where(table.c.seq > after)
            .order_by(table.c.seq)
            .limit(chunk)
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(page)).all()
        old = [row for row in rows if row.received_at < older_than_us]
        done = len(old) < len(rows) or len(rows) < chunk
        seqs = [row.seq for row in old if row.deletable]
        if seqs:
            async with engine.begin() as conn:
                await conn.execute(delete(table).where(table.c.seq.in_(seqs), deletable))
            removed += len(seqs)
        if done:
            return removed
        after = rows[-1].seq
        if pause_s:
            await asyncio.sleep(pause_s)
