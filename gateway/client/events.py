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

from gateway.pb.event_pb2 import Event, EventType

# The id state of the current millisecond: (milliseconds, the id's text up to its last group
# but one, the counter of its last 64 bits). Replaced whole, never changed in place, so threads
# share it without a lock; a forked child starts afresh.
_State = tuple[int, str, Iterator[int]]
_NO_STATE: _State = (-1, "", iter(()))
_state = _NO_STATE


def _forget_state() -> None:
    global _state
    _state = _NO_STATE


os.register_at_fork(after_in_child=_forget_state)


def _millisecond(ms: int) -> _State:
    global _state
    rand = int.from_bytes(os.urandom(10))
    high = f"{ms & ((1 << 48) - 1):012x}{0x7000 | (rand >> 68):04x}"  # time, version 7, rand_a
    # rand_b starts at a random 61-bit value and counts up: it cannot overflow its 62 bits.
    start = 0b10 << 62 | (rand & ((1 << 61) - 1))
    state = _state = (ms, f"{high[:8]}-{high[8:12]}-{high[12:16]}-", itertools.count(start))
    return state


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 bits that are random at each
    millisecond's first id and count up from there (RFC 9562's monotonic random method), so ids
    sort by time and two ids of one process never collide. The randomness comes from
    ``os.urandom`` (never shared with a forked child)."""
    ms = time.time_ns() // 1_000_000
    state = _state
    if state[0] != ms:
        state = _millisecond(ms)
    low = f"{next(state[2]):016x}"
    return f"{state[1]}{low[:4]}-{low[4:]}"


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


def stamp(event: Event) -> None:
    """Give ``event`` its id and occurred-at time now, unless it has them."""
    if not event.id:
        event.id = uuid7()
    if not event.HasField("occurred_at"):
        occurred_at = event.occurred_at
        occurred_at.seconds, occurred_at.nanos = divmod(time.time_ns(), 1_000_000_000)


def varint(n: int) -> bytes:
    """``n`` as a Protobuf base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(event: Event) -> bytes:
    """``event`` as one repeated ``events`` field (2) of a ``SubmitBatchRequest``."""
    body = event.SerializeToString()
    n = len(body)
    if n < 0x4000:  # a length of one or two bytes: most events
        head = bytes((0x12, n)) if n < 0x80 else bytes((0x12, n & 0x7F | 0x80, n >> 7))
        return head + body
    return b"\x12" + varint(n) + body


def batch_request(key: str, events: Sequence[bytes]) -> bytes:
    """A serialized ``SubmitBatchRequest`` of already ``encode``d events under ``key``."""
    raw = key.encode()
    return b"".join([b"\x0a", varint(len(raw)), raw, *events])


def decode(encoded: bytes) -> Event:
    """The event of one ``encode``d field (for rejection reports)."""
    length_end = 1
    while encoded[length_end] & 0x80:
        length_end += 1
    return Event.FromString(encoded[length_end + 1 :])
