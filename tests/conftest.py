"""Shared fixtures: a real gateway on free ports over a fresh SQLite file per test; an engine
over each storage backend; the JetStream stream of the relay tests (``tests.jetstream``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.storage.engine import create_engine
from tests.adapters.golden import PROJECT_ID

# The storage backends (SQLite and PostgreSQL) for the storage, relay and scale-out tests.
from tests.backends import (  # noqa: F401
    database_url,
    fresh_database_url,
    postgres_session_database,
    postgres_url,
)
from tests.harness import Gateway, started
from tests.jetstream import stream  # noqa: F401

# Property tests check behaviour, never speed: no per-example deadline on a shared machine.
settings.register_profile("eventgw", deadline=None)
settings.load_profile("eventgw")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'eventgw.db'}"


@pytest.fixture
async def gateway(sqlite_url: str) -> AsyncIterator[Gateway]:
    """A gateway serving HTTP and gRPC, with one project (the seeds' website id) and one key."""
    async with started(Settings(database_url=sqlite_url), project_id=PROJECT_ID) as gw:
        yield gw


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:  # noqa: F811
    """An engine over ``database_url`` (each backend in turn)."""
    engine = create_engine(Settings(database_url=database_url))
    try:
        yield engine
    finally:
        await engine.dispose()
