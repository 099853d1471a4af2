"""One Segment message (``identify``, ``track``, ``page``, ``screen``, ``group``, ``alias``) into
one canonical ``Event``.

- ``messageId`` is the event id (the deduplication key); without one, an id is generated from the
  Idempotency-Key (or request id) and the message's position.
- ``userId`` or ``anonymousId`` is required; ``track`` needs ``event``, ``group`` a ``groupId``,
  ``alias`` a ``previousId``.
- Time: the client's ``originalTimestamp`` (else ``timestamp``) is the original event time. With
  a ``sentAt`` (the message's, else the batch's) the event time is corrected for the client's
  clock skew, ``receivedAt - (sentAt - original)``, and the original is kept in
  ``original_occurred_at``; without one the original is the event time; without either, the
  receive time.
- ``traits`` are the user's (``user_properties``), or the group's on ``group``; ``context`` goes
  to typed fields (``adapters.segment.context``); ``integrations``, what is left of ``context``
  and every key the spec does not name are kept in ``extras``. ``writeKey`` is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from adapters.base import RawRequest
from adapters.fields import FieldError, check_depth, generated_id, to_struct, to_timestamp
from adapters.segment.context import apply_context
from adapters.segment.wire import (
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    MESSAGE_KEYS,
    TYPES,
    Message,
    decode,
    utc,
)
from gateway.pb.event_pb2 import Event, EventType

DIALECT = "segment"
EVENT_TYPES = {
    "identify": EventType.EVENT_TYPE_IDENTIFY,
    "track": EventType.EVENT_TYPE_TRACK,
    "page": EventType.EVENT_TYPE_PAGE_VIEW,
    "screen": EventType.EVENT_TYPE_SCREEN_VIEW,
    "group": EventType.EVENT_TYPE_GROUP,
    "alias": EventType.EVENT_TYPE_ALIAS,
}


@dataclass(frozen=True, kw_only=True)
class Shared:
    """What a batch body gives every message in it."""

    context: dict[str, Any] = field(default_factory=dict)
    integrations: dict[str, Any] = field(default_factory=dict)
    sent_at: datetime | None = None


def message_type(item: Any) -> str | None:
    """The ``type`` of a raw message, for a rejection's ``kind``."""
    kind = item.get("type") if isinstance(item, dict) else None
    return kind if isinstance(kind, str) else None


def message_id(item: Any) -> str | None:
    value = item.get("messageId") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def _required(value: str | None, field: str, message: str = "is required") -> str:
    if not value:
        raise FieldError(field, message)
    return value


def translate_message(
    request: RawRequest,
    item: Any,
    index: int,
    *,
    route_type: str | None,
    prefix: str,
    shared: Shared,
) -> Event:
    """``item`` as an ``Event``; ``FieldError`` when it is unusable."""
    if isinstance(item, dict):
        check_depth(item, prefix=prefix)  # before measuring it: orjson refuses deep nesting
    if isinstance(item, dict) and len(orjson.dumps(item)) > MAX_MESSAGE_BYTES:
        raise FieldError(prefix.rstrip(".") or "body", f"exceeds {MAX_MESSAGE_BYTES} bytes")
    msg = decode(item, Message, prefix)
    kind = route_type or _required(msg.type, f"{prefix}type")
    if kind not in TYPES:
        raise FieldError(f"{prefix}type", f"must be one of {', '.join(TYPES)}")
    if not (msg.user_id or msg.anonymous_id):
        raise FieldError(f"{prefix}userId", "or anonymousId is required")
    if msg.message_id is not None and not 0 < len(msg.message_id) <= MAX_ID_CHARS:
        raise FieldError(f"{prefix}messageId", f"must be 1 to {MAX_ID_CHARS} characters")
    name = kind
    if kind == "track":
        name = _required(msg.event, f"{prefix}event")
    elif kind == "group":
        _required(msg.group_id, f"{prefix}groupId")
    elif kind == "alias":
        _required(msg.previous_id, f"{prefix}previousId")
    extras = {k: v for k, v in item.items() if k not in MESSAGE_KEYS}
    if kind != "track" and msg.event is not None:
        extras["event"] = msg.event
    if route_type is not None and msg.type is not None and msg.type != route_type:
        extras["type"] = msg.type  # the route decides; a different body type is kept

    received = request.received_at
    event = Event(
        id=msg.message_id or generated_id(request, index),
        dialect=DIALECT,
        type=EVENT_TYPES[kind],
        name=name,
        received_at=to_timestamp(received),
    )
    _times(event, msg, shared, received)
    if msg.original_timestamp is not None and msg.timestamp is not None:
        extras["timestamp"] = item["timestamp"]  # a second client time, kept as sent
    ids = event.identity
    ids.user_id = msg.user_id or ""
    ids.anonymous_id = msg.anonymous_id or ""
    ids.previous_id = msg.previous_id or ""
    ids.group_id = msg.group_id or ""
    if msg.name is not None:
        event.page.name = msg.name
    if msg.category is not None:
        event.page.category = msg.category
    if msg.properties is not None:
        event.properties.CopyFrom(to_struct(msg.properties))
    if msg.traits is not None:
        target = event.group_properties if kind == "group" else event.user_properties
        target.CopyFrom(to_struct(msg.traits))
    context = {**shared.context, **(msg.context or {})}
    rest = apply_context(context, event)
    if rest:
        extras["context"] = rest
    integrations = {**shared.integrations, **(msg.integrations or {})}
    if integrations:
        extras["integrations"] = integrations
    if extras:
        event.extras.CopyFrom(to_struct(extras))
    return event


def _times(event: Event, msg: Message, shared: Shared, received: datetime) -> None:
    original = utc(msg.original_timestamp) or utc(msg.timestamp)
    sent = utc(msg.sent_at) or utc(shared.sent_at)
    if sent is not None:
        event.sent_at.CopyFrom(to_timestamp(sent))
    if original is None:
        event.occurred_at.CopyFrom(event.received_at)
    elif sent is None:
        event.occurred_at.CopyFrom(to_timestamp(original))
    else:
        try:
            corrected = received - (sent - original)
        except OverflowError:
            raise FieldError("sentAt", "is too far from the event's timestamp") from None
        event.occurred_at.CopyFrom(to_timestamp(corrected))
        event.original_occurred_at.CopyFrom(to_timestamp(original))
