"""VibeFollow users: ``POST /api/v1/users`` and ``POST /api/v1/users/bulk`` (the SDK's
``users.identify`` and ``users.identifyBulk``), each record an upsert of one user.

A record is ``{external_user_id, email?, traits?}``. It becomes a canonical identify event named
``$identify``: ``external_user_id`` and ``email`` in ``identity``, the trait bag in
``user_properties``, anything else in ``extras``. Re-sending a user is an update, not a duplicate
(the vendor upserts by ``external_user_id``): every record is stored as its own event, with an id
generated from the Idempotency-Key (or request id) and its index, like events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from adapters.allornothing import extras, required_text
from adapters.base import RawRequest
from adapters.fields import Fields, generated_id, to_struct, to_timestamp
from adapters.vibefollow.events import (
    DIALECT,
    MAX_EXTERNAL_USER_ID,
    MAX_PROPERTIES_BYTES,
    MAX_PROPERTY_KEYS,
)
from gateway.errors import InvalidRequest
from gateway.pb.event_pb2 import Event, EventType

IDENTIFY_EVENT = "$identify"
MAX_EMAIL = 320
# The vendor refuses a malformed address ("Invalid email"); its exact rule is not published, so
# the check is the common shape: one "@", no spaces, a dot in the domain.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def rows(body: Mapping[str, Any], limit: int) -> list[Any]:
    """The ``users`` of a bulk body. The vendor answers 400 when "users is missing, not an array,
    empty, or contains more than 1,000 records" (per-record problems are reported per record)."""
    found = body.get("users")
    if not isinstance(found, list):
        problem = "is required" if found is None else "must be an array"
        raise InvalidRequest(f"users {problem}", field="users")
    if not found:
        raise InvalidRequest("users must contain at least one record", field="users")
    if len(found) > limit:
        raise InvalidRequest(
            f"Too many users: {len(found)} (maximum {limit} per request)", field="users"
        )
    return found


def user(request: RawRequest, fields: Fields, index: int) -> Event:
    """One user record as an identify event; ``FieldError`` names the first bad field."""
    external_user_id = required_text(fields, "external_user_id", max_len=MAX_EXTERNAL_USER_ID)
    email = fields.text("email", max_len=MAX_EMAIL)
    if email is not None and not EMAIL.fullmatch(email):
        raise fields.error("email", "is not a valid email address")
    traits = fields.mapping("traits", max_keys=MAX_PROPERTY_KEYS, max_bytes=MAX_PROPERTIES_BYTES)
    # A record has no time of its own: an upsert happens when it is received.
    rest = extras(fields)
    received = to_timestamp(request.received_at)
    event = Event(
        id=generated_id(request, index),
        dialect=DIALECT,
        type=EventType.EVENT_TYPE_IDENTIFY,
        name=IDENTIFY_EVENT,
        occurred_at=received,
        received_at=received,
    )
    event.identity.external_id = external_user_id
    if email is not None:
        event.identity.email = email
    if traits is not None:
        event.user_properties.CopyFrom(to_struct(traits))
    if rest is not None:
        event.extras.CopyFrom(rest)
    return event
