"""The Segment tracking spec's wire format: msgspec Structs for a message and a batch body.

A message is checked against ``Message`` with ``msgspec.convert`` (types of the keys the spec
names; anything else is kept, untyped, for the event's extras). ``decode`` turns msgspec's
validation error into a ``FieldError`` naming the offending key, e.g. ``batch[2].userId``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, NoReturn, TypeVar

import msgspec

from adapters.fields import FieldError

# The spec's limits: 32 KB a message, 500 KB a batch request, 2,500 messages a batch.
MAX_MESSAGE_BYTES: Final = 32 * 1024
MAX_BATCH_BYTES: Final = 500 * 1024
MAX_BATCH_MESSAGES: Final = 2500
MAX_ID_CHARS: Final = 400
# Message types by name, and the single-message routes that imply them.
TYPES: Final = ("identify", "track", "page", "screen", "group", "alias")


class Message(msgspec.Struct, rename="camel", kw_only=True):
    """One call: ``type`` and an id are common to all; the rest depends on the type."""

    type: str | None = None
    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: datetime | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    write_key: str | None = None


class Batch(msgspec.Struct, rename="camel", kw_only=True):
    """A ``/v1/batch`` (or ``/v1/import``) body: messages plus what they share."""

    batch: list[Any]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: datetime | None = None
    write_key: str | None = None


MESSAGE_KEYS: Final = frozenset(Message.__struct_encode_fields__)
BATCH_KEYS: Final = frozenset(Batch.__struct_encode_fields__)

T = TypeVar("T", Message, Batch)


def decode(value: Any, kind: type[T], prefix: str = "") -> T:
    """``value`` as ``kind``; ``FieldError`` naming ``<prefix><key>`` when a known key has the
    wrong type."""
    if not isinstance(value, dict):
        raise FieldError(prefix.rstrip(".") or "body", "must be an object")
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, where = text.partition(" - at `$")
        key = where.rstrip("`").lstrip(".")
        if not key:  # a missing required key: "Object missing required field `batch`"
            key = message.rpartition("`")[0].rpartition("`")[2] or "body"
        _raise(prefix + key, message)


def _raise(field: str, message: str) -> NoReturn:
    raise FieldError(field, message.replace("`", "").replace("Expected", "expected"))


def utc(moment: datetime | None) -> datetime | None:
    """A wire time as an aware UTC datetime (a time with no offset is taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
