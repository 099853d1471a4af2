"""The two storage backends for tests: a fresh SQLite file per test, and one fresh PostgreSQL
database per test session (``eventgw_test_<random>``, created on the server of
``EVENTGW_TEST_POSTGRES_URL`` — default ``postgresql://postgres@127.0.0.1:5432/test``, whose
database is only the maintenance connection — migrated to head, emptied before each test that
uses it, dropped at the end).

``database_url`` is parametrized over both; its PostgreSQL case carries the ``postgres`` marker
(deselect with ``-m "not postgres"``). ``fresh_database_url`` is an unmigrated database of either
kind (the migration tests), ``postgres_url`` the session's migrated PostgreSQL database alone.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from gateway import migrate

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TABLES = ("events", "idempotency_keys", "failed_events", "api_keys", "projects")

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def maintenance_url() -> str:
    return os.environ.get("EVENTGW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _database(name: str) -> str:
    return make_url(maintenance_url()).set(database=name).render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(maintenance_url(), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {maintenance_url()} is unreachable ({exc!r}): start it (.ci/run does),"
            ' set EVENTGW_TEST_POSTGRES_URL, or deselect with -m "not postgres"',
            pytrace=False,
        )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database() -> str:
    """A new, empty database on the test server; its plain ``postgresql://`` URL."""
    name = f"eventgw_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    return _database(name)


async def drop_database(url: str) -> None:
    name = make_url(url).database
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def empty(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_session_database() -> Iterator[str]:
    url = asyncio.run(create_database())
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture
def postgres_url(postgres_session_database: str) -> str:
    """The session's PostgreSQL database, migrated and emptied for this test."""
    asyncio.run(empty(postgres_session_database))
    return postgres_session_database


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'eventgw.db'}"
        migrate.upgrade(url)
        return url
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=BACKENDS)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of its own (PostgreSQL: created and dropped here)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url = asyncio.run(create_database())
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))
