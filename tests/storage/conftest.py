"""The storage tests run on both backends: ``database_url`` and ``fresh_database_url`` (from
``tests.backends``, registered in ``tests/conftest.py``) are parametrized over SQLite and
PostgreSQL. Helpers here build stores and events over one database URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.pb.event_pb2 import Event
from gateway.storage.engine import create_engine, now_us
from gateway.storage.events import EventRow


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(database_url=database_url))
    try:
        yield engine
    finally:
        await engine.dispose()


def row(project_id: str, event_id: str, *, received_at: int | None = None) -> EventRow:
    at = now_us() if received_at is None else received_at
    event = Event(id=event_id, project_id=project_id, dialect="grpc", name="purchase")
    event.received_at.FromMicroseconds(at)
    return EventRow(
        project_id=project_id,
        event_id=event_id,
        dialect="grpc",
        event_type="track",
        received_at=at,
        payload=event.SerializeToString(),
    )
