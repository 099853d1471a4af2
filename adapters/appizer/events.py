"""Appizer events (seed 002): ``{event_name, user_id, properties?, ip?, ua?}`` as a canonical track
event, for ``POST /v1/events`` and the all-or-nothing ``POST /v1/events/batch``.

Appizer's wire format carries no timestamp and no event id: every event is stamped with the
receive time and given an id generated from the Idempotency-Key (or request id) and its index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.allornothing import describe, event_rows, extras, required_text
from adapters.base import RawRequest
from adapters.fields import FieldError, Fields, generated_id, to_struct, to_timestamp
from gateway.errors import InvalidRequest
from gateway.pb.event_pb2 import Event, EventType

DIALECT = "appizer"
MAX_NAME = 256
MAX_USER_ID = 256
MAX_IP = 64
MAX_USER_AGENT = 2048
MAX_PROPERTIES_BYTES = 32 * 1024


def rows(body: Mapping[str, Any], limit: int) -> list[Any]:
    """The ``events`` of a batch body; at most ``limit`` of them."""
    try:
        found = event_rows(body)
    except FieldError as exc:
        # Appizer: a missing, non-array or empty ``events`` is INVALID_REQUEST (no field code).
        raise InvalidRequest(describe(exc), field=exc.field) from exc
    if len(found) > limit:
        raise InvalidRequest(
            f"Too many events: {len(found)} (maximum {limit} per batch)", field="events"
        )
    return found


def event(request: RawRequest, fields: Fields, index: int) -> Event:
    """One event object as a track event; ``FieldError`` names the first bad field."""
    name = required_text(fields, "event_name", max_len=MAX_NAME)
    user_id = required_text(fields, "user_id", max_len=MAX_USER_ID)
    properties = fields.mapping("properties", max_bytes=MAX_PROPERTIES_BYTES)
    ip = fields.text("ip", max_len=MAX_IP)
    user_agent = fields.text("ua", max_len=MAX_USER_AGENT)
    # Appizer has no timestamp or event id on the wire; a client that sends ``timestamp`` or
    # ``event_id`` anyway keeps them in extras, uninterpreted.
    rest = extras(fields)
    received = to_timestamp(request.received_at)
    result = Event(
        id=generated_id(request, index),
        dialect=DIALECT,
        type=EventType.EVENT_TYPE_TRACK,
        name=name,
        occurred_at=received,
        received_at=received,
    )
    result.identity.user_id = user_id
    if properties is not None:
        result.properties.CopyFrom(to_struct(properties))
    if ip is not None:
        result.device.ip = ip
    if user_agent is not None:
        result.device.user_agent = user_agent
    if rest is not None:
        result.extras.CopyFrom(rest)
    return result
