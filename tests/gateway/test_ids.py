"""Generated ids: UUIDv5 of a key (what the standard library computes), UUIDv7 without one
(ordered by receive time, then by index; distinct across requests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.ids import uuid5, uuid7

NAMESPACE = uuid.UUID("0b6a7c52-3c5e-4d44-9b1a-6a8f3b1f0c11")
AT = datetime(2026, 12, 3, 6, 0, 0, 123456, tzinfo=UTC)


@given(st.text())
def test_uuid5_is_the_standard_one(name: str) -> None:
    assert uuid5(NAMESPACE.bytes, name) == str(uuid.uuid5(NAMESPACE, name))


def test_uuid7_is_a_version_7_uuid_carrying_the_receive_time() -> None:
    parsed = uuid.UUID(uuid7("r1", AT, 5))
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert parsed.int >> 80 == int(AT.timestamp() * 1000)
    assert parsed.int & 0xFFFFFFFF == 5


def test_uuid7_sorts_by_time_then_index_and_differs_across_requests() -> None:
    later = AT + timedelta(milliseconds=1)
    ids = [uuid7("r1", AT, i) for i in range(3)] + [uuid7("r0", later, i) for i in range(3)]
    assert sorted(ids) == ids and len(set(ids)) == 6
    assert uuid7("r1", AT, 0) == uuid7("r1", AT, 0)
    assert uuid7("r1", AT, 0) != uuid7("r2", AT, 0)
