"""Appizer users: ``POST /v1/users`` ("Create or Update User", the SDK's ``identify``) and
``POST /v1/users/aliases`` ("Create User Alias", the SDK's ``alias``).

- A user ``{user_id, email?, phone?, properties?, origin?}`` becomes an identify event named
  ``$identify``: ``user_id`` and ``email`` in ``identity``, ``properties`` (the user's traits) in
  ``user_properties``; ``phone`` and ``origin``, which have no typed home, and any other key in
  ``extras``.
- An alias ``{user_id | primary_user_id, alias_id}`` becomes an alias event named ``$alias``:
  ``alias_id`` is ``identity.previous_id``, another id of the user ``identity.user_id``. The
  vendor lets ``primary_user_id`` (its own id of the user) stand for ``user_id``; it is kept in
  ``extras`` under its name.

Neither has a time or an id on the wire: both are stamped with the receive time and given an id
generated from the Idempotency-Key (or request id), like Appizer events.
"""

from __future__ import annotations

from adapters.allornothing import extras, required_text
from adapters.appizer.events import DIALECT, MAX_PROPERTIES_BYTES, MAX_USER_ID
from adapters.base import RawRequest
from adapters.fields import FieldError, Fields, generated_id, to_struct, to_timestamp
from gateway.pb.event_pb2 import Event, EventType

IDENTIFY_EVENT = "$identify"
ALIAS_EVENT = "$alias"
MAX_EMAIL = 320
MAX_PHONE = 64


def _event(request: RawRequest, kind: EventType.ValueType, name: str) -> Event:
    received = to_timestamp(request.received_at)
    return Event(
        id=generated_id(request, 0),
        dialect=DIALECT,
        type=kind,
        name=name,
        occurred_at=received,
        received_at=received,
    )


def user(request: RawRequest, fields: Fields) -> Event:
    """A user to create or update, as an identify event; ``FieldError`` names the bad field."""
    user_id = required_text(fields, "user_id", max_len=MAX_USER_ID)
    email = fields.text("email", max_len=MAX_EMAIL)
    phone = fields.text("phone", max_len=MAX_PHONE)
    properties = fields.mapping("properties", max_bytes=MAX_PROPERTIES_BYTES)
    origin = fields.mapping("origin", max_bytes=MAX_PROPERTIES_BYTES)  # free-form metadata
    rest = extras(fields)
    event = _event(request, EventType.EVENT_TYPE_IDENTIFY, IDENTIFY_EVENT)
    event.identity.user_id = user_id
    if email is not None:
        event.identity.email = email
    if properties is not None:
        event.user_properties.CopyFrom(to_struct(properties))
    if rest is not None:
        event.extras.CopyFrom(rest)
    # Checked above, but with no typed home: kept under their wire names.
    if phone is not None:
        event.extras["phone"] = phone
    if origin is not None:
        event.extras["origin"] = origin
    return event


def alias(request: RawRequest, fields: Fields) -> Event:
    """An alias of an existing user, as an alias event; ``FieldError`` names the bad field."""
    user_id = fields.text("user_id", min_len=1, max_len=MAX_USER_ID)
    primary = fields.text("primary_user_id", min_len=1, max_len=MAX_USER_ID)
    if user_id is None and primary is None:
        raise FieldError("user_id", "required")
    alias_id = required_text(fields, "alias_id", max_len=MAX_USER_ID)
    rest = extras(fields)
    event = _event(request, EventType.EVENT_TYPE_ALIAS, ALIAS_EVENT)
    if user_id is not None:
        event.identity.user_id = user_id
    event.identity.previous_id = alias_id
    if rest is not None:
        event.extras.CopyFrom(rest)
    if primary is not None:  # the vendor's own id of the user: no typed home
        event.extras["primary_user_id"] = primary
    return event
