"""``adapters.fields``' fast ``uuid5`` and ``to_timestamp`` give exactly what the standard
library and protobuf give (generated event ids are dedup keys: they must never change)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from adapters.fields import to_timestamp, uuid5

NAMESPACE = uuid.UUID("6f1c1a47-2b9e-4d0a-9a55-3c1f7d0e8b21")


@given(st.text())
def test_uuid5_is_the_standard_librarys(name: str) -> None:
    assert uuid5(NAMESPACE.bytes, name) == str(uuid.uuid5(NAMESPACE, name))


@given(
    st.integers(min_value=-(10**16), max_value=4 * 10**15),
    st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]),
    st.booleans(),
)
def test_to_timestamp_is_protobufs(us: int, tz: timezone, naive: bool) -> None:
    moment = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).astimezone(tz)
    if naive:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert to_timestamp(moment) == expected
