"""The storage tests run on both backends: ``database_url`` and ``fresh_database_url`` (from
``tests.backends``, registered in ``tests/conftest.py``) are parametrized over SQLite and
PostgreSQL (and so is the ``engine`` fixture over them). Helpers here build events."""

from __future__ import annotations

from gateway.pb.event_pb2 import Event
from gateway.storage.engine import now_us
from gateway.storage.events import EventRow


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
