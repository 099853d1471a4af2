"""The schema comes only from the Alembic migrations, on both backends: they go up, down and up
again, and what they build is exactly ``gateway.storage.schema`` (autogenerate sees no change);
a migration that changes a table with rows keeps them (0004 on the failed events)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, update
from sqlalchemy.engine import Connection

from gateway import migrate
from gateway.config import Settings
from gateway.storage.engine import create_engine, now_us
from gateway.storage.failed import FailedEventStore, failed
from gateway.storage.schema import failed_events, metadata

TABLES = {"projects", "api_keys", "events", "idempotency_keys", "failed_events"}


async def _inspect(url: str, check: Any) -> Any:
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(check)
    finally:
        await engine.dispose()


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_upgrade_downgrade_upgrade(fresh_database_url: str) -> None:
    url = fresh_database_url
    await asyncio.to_thread(migrate.upgrade, url)
    assert await _inspect(url, _tables) == TABLES
    engine = create_engine(Settings(database_url=url))
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()

    await asyncio.to_thread(migrate.downgrade, url, "base")
    assert await _inspect(url, _tables) == set()

    await asyncio.to_thread(migrate.upgrade, url)
    assert await _inspect(url, _tables) == TABLES


async def test_migrations_build_exactly_the_models(database_url: str) -> None:
    assert await _inspect(database_url, _diff) == []


def _failed_columns(conn: Connection) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("failed_events")}


async def _published_at(url: str) -> list[int | None]:
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as conn:
            query = select(failed_events.c.published_at).order_by(failed_events.c.seq)
            return list((await conn.execute(query)).scalars())
    finally:
        await engine.dispose()


async def test_0004_keeps_the_failed_events_unpublished_and_its_downgrade_keeps_them(
    fresh_database_url: str,
) -> None:
    url = fresh_database_url
    await asyncio.to_thread(migrate.upgrade, url, "0003")
    assert "published_at" not in await _inspect(url, _failed_columns)
    refused = [
        failed(
            project_id="p",
            dialect="databuddy",
            endpoint="POST /batch",
            received_at=now_us(),
            code="invalid_event",
            message=f"refused {n}",
            field=None,
            raw=b"\x00\xff%d" % n,
        )
        for n in range(2)
    ]
    engine = create_engine(Settings(database_url=url))
    try:  # the store writes no published_at: it works on 0003's table
        assert (await FailedEventStore(engine).record(refused)).stored == 2
    finally:
        await engine.dispose()

    await asyncio.to_thread(migrate.upgrade, url, "0004")
    assert await _published_at(url) == [None, None]
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.begin() as conn:
            published = update(failed_events).where(failed_events.c.seq == 1)
            await conn.execute(published.values(published_at=now_us()))
    finally:
        await engine.dispose()

    await asyncio.to_thread(migrate.downgrade, url, "0003")
    assert "published_at" not in await _inspect(url, _failed_columns)
    assert "ix_failed_events_project_id_received_at" in await _inspect(url, _index_names)
    await asyncio.to_thread(migrate.upgrade, url)
    assert await _published_at(url) == [None, None]
    engine = create_engine(Settings(database_url=url))
    try:
        kept = await FailedEventStore(engine).list("p")
    finally:
        await engine.dispose()
    assert [(item.message, item.raw) for item in kept] == [
        (item.message, item.raw) for item in refused
    ]


def _index_names(conn: Connection) -> set[str]:
    return {str(index["name"]) for index in inspect(conn).get_indexes("failed_events")}
