"""The client's events on the wire: time-ordered ids (UUIDv7), ``track`` arguments into a
canonical ``Event``, and batches as serialized ``SubmitBatchRequest`` bytes.

Each event is serialized once, when it is enqueued; a batch is the concatenation of its events'
bytes under an idempotency key chosen when the batch is formed, so every retry of a batch sends
the very same bytes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway.pb.event_pb2 import Event, EventType

_RANDOM = bytearray()  # os.urandom drawn in blocks; emptied in a forked child
_RANDOM_LOCK = threading.Lock()


def _random80() -> int:
    with _RANDOM_LOCK:
        if len(_RANDOM) < 10:
            _RANDOM.extend(os.urandom(2560))
        chunk = _RANDOM[-10:]
        del _RANDOM[-10:]
    return int.from_bytes(chunk)


os.register_at_fork(after_in_child=_RANDOM.clear)


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits, so ids sort by
    time. The randomness comes from ``os.urandom`` (never shared with a forked child)."""
    ms = time.time_ns() // 1_000_000
    rand = _random80()
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64  # version 7, rand_a
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))  # variant, rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
    if user_id:
        event.identity.user_id = user_id
    if anonymous_id:
        event.identity.anonymous_id = anonymous_id
    if properties:
        event.properties.update(properties)
    if user_properties:
        event.user_properties.update(user_properties)
    if isinstance(occurred_at, datetime):
        event.occurred_at.FromDatetime(occurred_at)
    elif occurred_at is not None:
        event.occurred_at.FromNanoseconds(int(occurred_at * 1e9))
    return event


def stamp(event: Event) -> None:
    """Give ``event`` its id and occurred-at time now, unless it has them."""
    if not event.id:
        event.id = uuid7()
    if not event.HasField("occurred_at"):
        seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
        event.occurred_at.seconds, event.occurred_at.nanos = seconds, nanos


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
    return b"\x12" + varint(len(body)) + body


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
