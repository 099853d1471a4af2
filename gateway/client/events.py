"""The client's events on the wire: time-ordered ids (UUIDv7), ``track`` arguments into a
canonical ``Event``, and batches as serialized ``SubmitBatchRequest`` bytes.

Each event is serialized once, when it is enqueued; a batch is the concatenation of its events'
bytes under an idempotency key chosen when the batch is formed, so every retry of a batch sends
the very same bytes.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.pb.event_pb2 import Event, EventType
from gateway.pb.gateway_pb2 import ResultView, SubmitBatchRequest

# The state of the current millisecond: (milliseconds, the id's text up to its last 12 hex
# digits, the counter of its last 48 bits, the millisecond as an encoded occurred-at field).
# Replaced whole, never changed in place, so threads share it without a lock; a forked child
# starts afresh.
_State = tuple[int, str, Iterator[int], bytes]
_NO_STATE: _State = (-1, "", iter(()), b"")
_state = _NO_STATE


def _forget_state() -> None:
    global _state
    _state = _NO_STATE


os.register_at_fork(after_in_child=_forget_state)


def _now() -> _State:
    ms = time.time_ns() // 1_000_000
    state = _state
    return state if state[0] == ms else _millisecond(ms)


def _millisecond(ms: int) -> _State:
    global _state
    rand = int.from_bytes(os.urandom(10))
    version_rand_a = 0x7000 | rand >> 68  # version 7, then 12 random bits
    variant_rand_b = 0x8000 | (rand >> 54) & 0x3FFF  # variant 10, then 14 random bits
    head = f"{ms & ((1 << 48) - 1):012x}{version_rand_a:04x}{variant_rand_b:04x}"
    # the last 48 bits of rand_b start at a random 47-bit value and count up: they cannot overflow
    start = rand & ((1 << 47) - 1)
    seconds, millis = divmod(ms, 1000)
    occurred_at = Timestamp(seconds=seconds, nanos=millis * 1_000_000)
    state = _state = (
        ms,
        f"{head[:8]}-{head[8:12]}-{head[12:16]}-{head[16:]}-",
        itertools.count(start),
        Event(occurred_at=occurred_at).SerializeToString(),
    )
    return state


def uuid7() -> str:
    """A UUIDv7 (RFC 9562) of now: 48 bits of Unix milliseconds, then 74 bits drawn at random at
    each millisecond's first id (all but the top bit of the last 48, so that these count up from
    there without overflowing: RFC 9562's monotonic random method), so ids sort by time and two
    ids of one process never collide. The randomness comes from ``os.urandom`` (never shared with
    a forked child)."""
    return _next_id(_now())


def _next_id(state: _State) -> str:
    """The next id of ``state``'s millisecond."""
    return f"{state[1]}{next(state[2]):012x}"


def track_event(
    name: str,
    *,
    properties: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    occurred_at: datetime | float | None = None,
    event_id: str | None = None,
    namespace: str | None = None,
    type: EventType.ValueType = EventType.EVENT_TYPE_TRACK,
    user_properties: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> Event:
    """The canonical event of a ``track`` call (``occurred_at``: an aware datetime or Unix
    seconds; id and time are filled in at enqueue when absent)."""
    event = Event(name=name, type=type)
    if event_id:
        event.id = event_id
    if namespace:
        event.namespace = namespace
    if source:
        event.source = source
    if user_id or anonymous_id:
        identity = event.identity
        if user_id:
            identity.user_id = user_id
        if anonymous_id:
            identity.anonymous_id = anonymous_id
    if properties:
        _set_struct(event.properties, properties)
    if user_properties:
        _set_struct(event.user_properties, user_properties)
    if isinstance(occurred_at, datetime):
        event.occurred_at.FromDatetime(occurred_at)
    elif occurred_at is not None:
        event.occurred_at.FromNanoseconds(int(occurred_at * 1e9))
    return event


def _set_struct(struct: Struct, values: Mapping[str, Any]) -> None:
    """``struct.update(values)``, with the common values (text, numbers, booleans) set here
    directly: half the cost of ``update``, which dispatches each value by a chain of checks."""
    fields = struct.fields
    for key, value in values.items():
        kind = type(value)
        if kind is str:
            fields[key].string_value = value
        elif kind is float or kind is int:
            fields[key].number_value = value
        elif kind is bool:
            fields[key].bool_value = value
        else:
            struct.update({key: value})


def varint(n: int) -> bytes:
    """``n`` as a Protobuf base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# The field tags and lengths of event lengths seen so far, up to the two-byte ones.
_HEADS: dict[int, bytes] = {}


def encode(event: Event) -> bytes:
    """``event`` as one repeated ``events`` field (2) of a ``SubmitBatchRequest``, given now
    what it lacks: an id, a UUIDv7 set on ``event`` too, and an occurred-at time, this
    millisecond (the id's). The time is appended to the event's bytes (protobuf reads a field
    wherever it comes) rather than set on ``event``: one serialization, no message work for it."""
    state = _now()
    if not event.id:
        event.id = _next_id(state)
    body = event.SerializeToString()
    if not event.HasField("occurred_at"):
        body += state[3]
    n = len(body)
    head = _HEADS.get(n)
    if head is None:
        head = b"\x12" + varint(n)
        if n < 0x4000:
            _HEADS[n] = head
    return head + body


# Every event has its id from the client: the answer need name only those not accepted.
_VIEW = SubmitBatchRequest(result_view=ResultView.RESULT_VIEW_EXCEPTIONS).SerializeToString()


def batch_request(key: str, events: Sequence[bytes]) -> bytes:
    """A serialized ``SubmitBatchRequest`` of already ``encode``d events under ``key``, asking
    for the answer's exceptions only (``RESULT_VIEW_EXCEPTIONS``)."""
    raw = key.encode()
    return b"".join([b"\x0a", varint(len(raw)), raw, _VIEW, *events])


def decode(encoded: bytes) -> Event:
    """The event of one ``encode``d field (for rejection reports)."""
    length_end = 1
    while encoded[length_end] & 0x80:
        length_end += 1
    return Event.FromString(encoded[length_end + 1 :])
