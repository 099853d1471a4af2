"""The client's parts on their own: ids, the buffer's policies, the retry classes and waits."""

from __future__ import annotations

import os
import threading
import time
import types
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from gateway.client import Backoff, BufferFull, ClientClosed, Counters, events, uuid7
from gateway.client.buffer import Buffer
from gateway.client.events import batch_request, decode, encode, track_event
from gateway.client.retry import DETAILS_KEY, retry_info
from gateway.pb.gateway_pb2 import SubmitBatchRequest


def test_ids_are_uuid7_and_ordered_by_time() -> None:
    first = uuid7()
    time.sleep(0.002)
    ids = [uuid7() for _ in range(1000)]
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 1000
    assert all(first < i for i in ids)


def test_a_forked_child_draws_ids_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # One millisecond for parent and child: without a fresh start, the child would count on
    # from the parent's state and hand out the parent's next ids.
    monkeypatch.setattr(events, "time", types.SimpleNamespace(time_ns=lambda: 1_800_000_000_000))
    uuid7()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, " ".join(uuid7() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    parent = {uuid7() for _ in range(100)}
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        child = set(pipe.read().decode().split())
    assert len(child) == 100 and not child & parent


def test_a_batch_is_a_submit_batch_request_of_the_events() -> None:
    events = [
        track_event("a", event_id="1", user_id="u", occurred_at=1.8e9),
        track_event("b", event_id="2", properties={"x": 1}, occurred_at=1.8e9 + 0.5),
    ]
    request = SubmitBatchRequest.FromString(batch_request("key-1", [encode(e) for e in events]))
    assert request.idempotency_key == "key-1"
    assert list(request.events) == events
    assert decode(encode(events[1])) == events[1]


def test_an_event_without_id_and_time_gets_both_at_enqueue(monkeypatch: pytest.MonkeyPatch) -> None:
    now_ns = 1_800_000_123_456_789_012
    monkeypatch.setattr(events, "time", types.SimpleNamespace(time_ns=lambda: now_ns))
    event = track_event("a", properties={"x": 1})
    sent = decode(encode(event))
    assert sent.id == event.id and uuid.UUID(event.id).version == 7
    assert uuid.UUID(event.id).int >> 80 == now_ns // 1_000_000  # the id's millisecond...
    assert sent.occurred_at == Timestamp(seconds=1_800_000_123, nanos=456_000_000)  # ...its time
    assert not event.HasField("occurred_at")  # set on the wire only
    sent.ClearField("occurred_at")
    assert sent == event
    second = decode(encode(track_event("a")))
    assert second.id > event.id and second.occurred_at == Timestamp(
        seconds=1_800_000_123, nanos=456_000_000
    )


def buffer(policy: str, capacity: int = 4) -> Buffer:
    return Buffer(
        capacity=capacity,
        policy=policy,  # type: ignore[arg-type]
        batch_size=2,
        max_batch_bytes=1 << 20,
        on_batch_ready=lambda: None,
        counters=Counters(),
    )


def test_drop_newest_counts_what_it_drops() -> None:
    b = buffer("drop_newest")
    assert [b.add(b"x") for _ in range(6)] == [True] * 4 + [False] * 2
    assert (b.counters.enqueued, b.counters.dropped, b.held) == (4, 2, 4)


def test_raise_refuses_at_capacity() -> None:
    b = buffer("raise")
    for _ in range(4):
        b.add(b"x")
    with pytest.raises(BufferFull):
        b.add(b"x")


def test_block_waits_for_room_then_times_out() -> None:
    b = buffer("block")
    for _ in range(4):
        b.add(b"x")
    threading.Timer(0.05, b.release, args=(1,)).start()
    assert b.add(b"y", timeout=10)  # room came
    with pytest.raises(BufferFull):
        b.add(b"z", timeout=0.01)
    b.close()
    with pytest.raises(ClientClosed):
        b.add(b"z")


def test_batches_form_by_size_and_by_age() -> None:
    b = buffer("block", capacity=10)
    for i in range(5):
        b.add(bytes([i]))
    full = b.take(force=False, max_age=60)
    assert [batch.events for batch in full] == [[b"\x00", b"\x01"], [b"\x02", b"\x03"]]
    assert b.take(force=False, max_age=60) == []  # one young event waits
    assert [batch.events for batch in b.take(force=False, max_age=0)] == [[b"\x04"]]
    assert len({batch.key for batch in full}) == 2
    b.add(b"\x05")
    b.add(b"\x06")
    assert [batch.events for batch in b.take(force=False, max_age=60)] == [[b"\x05", b"\x06"]]


def test_batches_form_by_bytes() -> None:
    b = Buffer(
        capacity=10,
        policy="block",
        batch_size=10,
        max_batch_bytes=4,
        on_batch_ready=lambda: None,
        counters=Counters(),
    )
    b.add(b"ab")
    assert b.take(force=False, max_age=60) == []
    b.add(b"cd")  # exactly the limit
    assert [batch.events for batch in b.take(force=False, max_age=60)] == [[b"ab", b"cd"]]
    for event in (b"abc", b"de", b"f"):
        b.add(event)
    assert [batch.events for batch in b.take(force=False, max_age=60)] == [[b"abc"]]
    assert [batch.events for batch in b.take(force=True, max_age=60)] == [[b"de", b"f"]]


def details(seconds: float) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=14, message="later")
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(int(seconds * 1000))
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return ((DETAILS_KEY, status.SerializeToString()),)


def test_retry_info_is_read_from_the_status_details() -> None:
    assert retry_info(details(1.5)) == 1.5
    assert retry_info((("other", b"x"),)) is None
    assert retry_info(None) is None


def test_backoff_grows_with_jitter_and_the_server_wins() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0)
    assert all(0 <= backoff.delay(1, None) <= 0.1 for _ in range(100))
    assert all(0 <= backoff.delay(10, None) <= 1.0 for _ in range(100))
    assert max(backoff.delay(10, None) for _ in range(200)) > 0.5
    assert all(2.0 <= backoff.delay(1, 2.0) <= 2.2 for _ in range(100))
    assert grpc.StatusCode.UNAVAILABLE  # the classes are grpc's own codes
