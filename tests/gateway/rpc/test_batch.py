"""The gRPC front stores each event as the client encoded it, followed by the gateway's fields
(``rpc.batch``, ``rpc.service._suffixes``): the bytes must delimit exactly the client's events, and
decode to the normalized event whatever the client set."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from gateway.pb.event_pb2 import Event, EventType
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from gateway.rpc.batch import Batch
from gateway.rpc.translate import _received, _suffixes


def test_each_event_is_its_own_encoding() -> None:
    events = [Event(id=f"e{i}", name="n" * i) for i in range(1, 4)]
    events[1].properties.update({"nested": {"list": [1, "two", None]}})
    request = SubmitBatchRequest(idempotency_key="k", events=events)
    batch = Batch.parse(request.SerializeToString())
    assert batch.request == request
    assert [Event.FromString(raw) for raw in batch.events] == events


def test_an_unknown_field_is_kept_as_sent() -> None:
    unknown = b"\xf8\x3f\x2a"  # field 1023, varint 42: not in this version of Event
    encoded = Event(id="x", name="n").SerializeToString() + unknown
    raw = b"\x12" + bytes([len(encoded)]) + encoded
    assert list(Batch.parse(raw).events) == [encoded]


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        Batch.parse(b"\x12\x05abc")


@pytest.mark.parametrize("now_ns", [1_700_000_000_123_456_789, 1_700_000_000_000_000_000])
def test_the_gateways_fields_replace_the_clients(now_ns: int) -> None:
    client = Event(id="c", name="n", dialect="spoofed", project_id="other")
    client.received_at.seconds, client.received_at.nanos = 1_000_000_000, 999
    received = _received(now_ns)
    common, *_ = _suffixes("p", received)
    stored = Event.FromString(client.SerializeToString() + common)
    assert (stored.dialect, stored.project_id) == ("grpc", "p")
    assert stored.received_at == received
    assert abs(received.ToNanoseconds() - now_ns) <= 1


def test_type_and_occurred_at_are_filled_only_when_absent() -> None:
    received = _received(1_700_000_000_500_000_000)
    suffixes = _suffixes("p", received)
    bare = Event.FromString(Event(id="b", name="n").SerializeToString() + suffixes[3])
    assert bare.type == EventType.EVENT_TYPE_TRACK and bare.occurred_at == received
    typed = Event(id="t", name="n", type=EventType.EVENT_TYPE_PAGE_VIEW)
    typed.occurred_at.seconds = 1_600_000_000
    kept = Event.FromString(typed.SerializeToString() + suffixes[0])
    assert kept.type == EventType.EVENT_TYPE_PAGE_VIEW and kept.occurred_at.seconds == 1_600_000_000
