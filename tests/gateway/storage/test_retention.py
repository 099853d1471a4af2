"""Retention of the outbox (both backends): delivered events older than the cut-off go, a chunk
per transaction; undelivered ones never do, however old; a serving gateway does it by itself."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.storage.engine import create_engine, now_us
from gateway.storage.retention import purge_delivered
from gateway.storage.schema import events
from tests.harness import started
from tests.jetstream import event_rows, seed

HOUR_US = 3_600_000_000


async def remaining(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list(
            (await conn.execute(select(events.c.event_id).order_by(events.c.seq))).scalars()
        )


async def deliver(engine: AsyncEngine, ids: list[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(events).where(events.c.event_id.in_(ids)).values(delivered_at=now_us())
        )


async def test_only_delivered_events_past_the_cut_off_go(database_url: str) -> None:
    now = now_us()
    old = event_rows(7, received_at=now - 2 * HOUR_US)  # ev-0 .. ev-6
    new = event_rows(3, start=7, received_at=now)  # ev-7 .. ev-9
    await seed(database_url, old + new)
    engine = create_engine(Settings(database_url=database_url))
    try:
        # Delivered: five of the old ones and one new one; ev-5 and ev-6 are old but undelivered.
        await deliver(engine, ["ev-0", "ev-1", "ev-2", "ev-3", "ev-4", "ev-8"])
        assert await purge_delivered(engine, now - HOUR_US, chunk=2) == 5
        assert await remaining(engine) == ["ev-5", "ev-6", "ev-7", "ev-8", "ev-9"]
        assert await purge_delivered(engine, now - HOUR_US) == 0
        assert await purge_delivered(engine, now + HOUR_US) == 1  # ev-8: delivered, now old
        assert await remaining(engine) == ["ev-5", "ev-6", "ev-7", "ev-9"]
    finally:
        await engine.dispose()


async def test_the_serving_process_applies_the_retention(sqlite_url: str) -> None:
    settings = Settings(
        database_url=sqlite_url, event_retention_seconds=0.2, retention_interval_seconds=0.1
    )
    async with started(settings):
        await seed(sqlite_url, event_rows(4))
        engine = create_engine(settings)
        try:
            await deliver(engine, ["ev-0", "ev-1"])
            for _ in range(100):
                if await remaining(engine) == ["ev-2", "ev-3"]:
                    break
                await asyncio.sleep(0.05)
            assert await remaining(engine) == ["ev-2", "ev-3"]  # the undelivered stay
        finally:
            await engine.dispose()
