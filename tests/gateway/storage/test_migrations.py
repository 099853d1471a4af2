"""The schema comes only from the Alembic migrations, on both backends: they go up, down and up
again, and what they build is exactly ``gateway.storage.schema`` (autogenerate sees no change)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from gateway import migrate
from gateway.config import Settings
from gateway.storage.engine import create_engine
from gateway.storage.schema import metadata

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
