"""The tracker's items on ``POST /batch``, ``POST /`` and ``GET /px.jpg``: ``{"type",
"payload"}`` objects, or bare ones (the real tracker's form), each a ``track`` or an
``outgoing_link`` payload. A batch decoded whole (``wire.decode_batch``) and one decoded item by
item give the same items; an invalid item is a ``SchemaRejection`` naming its field.
"""

from __future__ import annotations

from typing import Any

import orjson

from adapters.base import RawRequest, Rejection
from adapters.databuddy.envelope import SchemaRejection
from adapters.databuddy.events import (
    LINK_FIELDS,
    TRACK_FIELDS,
    link_event,
    received,
    set_extras,
    track_event,
)
from adapters.databuddy.wire import (
    KINDS,
    SCHEMA_ERROR,
    UNKNOWN_TYPE,
    LinkPayload,
    TrackPayload,
    parse,
)
from adapters.fields import FieldError, generated_id
from gateway.pb.event_pb2 import Event


def track_items(request: RawRequest, payloads: list[TrackPayload]) -> list[Event | Rejection]:
    """The items of a batch decoded whole: an event each, or the rejection of a check the
    struct could not make."""
    items: list[Event | Rejection] = []
    at = received(request.received_at)
    for index, p in enumerate(payloads):
        default_id = "" if p.eventId else generated_id(request, index)
        try:
            items.append(track_event(p, default_id, at))
        except FieldError as exc:
            items.append(_schema_rejection(index, "track", p.eventId, exc))
    return items


def beacon_item(request: RawRequest, index: int, item: Any) -> Event | Rejection:
    """One ``{"type", "payload"}`` item, or a bare item (the real tracker's form)."""
    if not isinstance(item, dict):
        # The vendor treats a non-object item as a `track` that fails its schema.
        return SchemaRejection(
            index=index, message=SCHEMA_ERROR, kind="track", field="", detail="must be an object"
        )
    # Mirrors the vendor's `event.type || "track"`: any falsy type means track.
    raw_kind = item.get("type") or "track"
    kind = raw_kind if isinstance(raw_kind, str) else orjson.dumps(raw_kind).decode()
    wrapped = "payload" in item
    data = item["payload"] if wrapped else item
    event_id = data.get("eventId") if isinstance(data, dict) else None
    event_id = event_id if isinstance(event_id, str) else None
    if kind not in KINDS:
        return Rejection(
            index=index, message=UNKNOWN_TYPE, code="unknown_type", kind=kind, event_id=event_id
        )
    if not isinstance(data, dict):
        return SchemaRejection(
            index=index,
            message=SCHEMA_ERROR,
            kind=kind,
            field="payload",
            detail="must be an object",
        )
    wrapper = {k: v for k, v in item.items() if k not in ("type", "payload")} if wrapped else {}
    try:
        if kind == "track":
            payload = parse(data, TrackPayload)
            default_id = "" if payload.eventId else generated_id(request, index)
            event = track_event(payload, default_id, received(request.received_at))
            known = TRACK_FIELDS if wrapped else TRACK_FIELDS | {"type"}
        else:
            event = link_event(parse(data, LinkPayload), received(request.received_at))
            known = LINK_FIELDS if wrapped else LINK_FIELDS | {"type"}
        set_extras(event, data, known, wrapper)
    except FieldError as exc:
        return _schema_rejection(index, kind, event_id, exc)
    return event


def _schema_rejection(index: int, kind: str, event_id: str | None, exc: FieldError) -> Rejection:
    return SchemaRejection(
        index=index,
        message=SCHEMA_ERROR,
        kind=kind,
        event_id=event_id,
        field=exc.field,
        detail=exc.message,
    )
