"""VibeFollow events (seed 004): ``{external_user_id, name, properties?, timestamp?}`` as a
canonical track event, for ``POST /api/v1/events``, ``/events/batch`` and ``/events/bulk``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.allornothing import event_rows, extras, required_text
from adapters.base import RawRequest
from adapters.fields import Fields, generated_id, to_struct, to_timestamp
from gateway.errors import PayloadTooLarge
from gateway.pb.event_pb2 import Event, EventType

DIALECT = "vibefollow"
MAX_EXTERNAL_USER_ID = 256
MAX_NAME = 256
MAX_PROPERTY_KEYS = 100
MAX_PROPERTIES_BYTES = 1024 * 1024


def rows(body: Mapping[str, Any], limit: int) -> list[Any]:
    """The ``events`` of a batch or bulk body: missing, not an array or empty is a 422 naming
    ``events``; more than ``limit`` a 413 (VibeFollow: "split the batch on your side")."""
    found = event_rows(body)
    if len(found) > limit:
        raise PayloadTooLarge(
            f"Too many events: {len(found)} (maximum {limit} per request)",
            limit=limit,
            field="events",
        )
    return found


def event(request: RawRequest, fields: Fields, index: int) -> Event:
    """One event object as a track event; ``FieldError`` names the first bad field."""
    external_user_id = required_text(fields, "external_user_id", max_len=MAX_EXTERNAL_USER_ID)
    name = required_text(fields, "name", max_len=MAX_NAME)
    properties = fields.mapping(
        "properties", max_keys=MAX_PROPERTY_KEYS, max_bytes=MAX_PROPERTIES_BYTES
    )
    # Documented as ISO-8601; Unix milliseconds are accepted too (lenient, as elsewhere).
    occurred = fields.iso_or_epoch_ms("timestamp")
    # An ``id`` / ``event_id`` the client sends stays in extras: the event id is always
    # generated, so that a retry under the same Idempotency-Key maps to the same ids.
    rest = extras(fields)
    received = to_timestamp(request.received_at)
    result = Event(
        id=generated_id(request, index),
        dialect=DIALECT,
        type=EventType.EVENT_TYPE_TRACK,
        name=name,
        occurred_at=received if occurred is None else to_timestamp(occurred),
        received_at=received,
    )
    result.identity.external_id = external_user_id
    if properties is not None:
        result.properties.CopyFrom(to_struct(properties))
    if rest is not None:
        result.extras.CopyFrom(rest)
    return result
