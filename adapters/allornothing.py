"""Shared steps of the Bearer-key, all-or-nothing JSON dialects (Appizer and VibeFollow).

Both vendors take ``Authorization: Bearer <key>`` and a ``{"events": [...]}`` batch that is stored
whole or not at all: the first invalid event rejects the request, naming the offending field with
its index (``events[3].user_id``). Here live the pieces they share: the Bearer credential, the
``events`` array, the all-or-nothing loop that turns a ``FieldError`` into ``InvalidEvent`` (a
``ValidationFailed`` that remembers what was wrong, so each dialect can pick its own error code),
and the lossless remainder of an event object (its ``extras``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf.struct_pb2 import Struct

from adapters.fields import FieldError, Fields, check_depth, to_struct
from gateway.errors import (
    InvalidRequest,
    ValidationFailed,
)
from gateway.model import ApiKey
from gateway.pb.event_pb2 import Event

# FieldError messages (``adapters.fields``) that mean "absent" and "of the wrong JSON type".
REQUIRED = "required"
WRONG_TYPE = frozenset(
    {
        "must be a string",
        "must be a number",
        "must be an integer",
        "must be an object",
        "must be an array",
    }
)

_T = TypeVar("_T")

# Translates one event object; ``index`` is its position in the request (for generated ids).
RowTranslator = Callable[[Fields, int], Event]


class InvalidEvent(ValidationFailed):
    """An event failed validation; ``problem`` is the ``FieldError`` message ("required", ...)."""

    def __init__(self, error: FieldError) -> None:
        super().__init__(describe(error), field=error.field or None)
        self.problem = error.message


def describe(error: FieldError) -> str:
    """A sentence for ``error``: "events[1].user_id is required"."""
    subject = error.field or "event"
    if error.message == REQUIRED:
        return f"{subject} is required"
    return f"{subject} {error.message}"


def bearer_key(headers: Mapping[str, str]) -> ApiKey | None:
    """The key of ``Authorization: Bearer <key>``; None when absent or not a Bearer header (both
    vendors answer "missing or malformed Authorization header" alike)."""
    scheme, _, key = headers.get("authorization", "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    return ApiKey(key)


def body_object(body: Any) -> Mapping[str, Any]:
    """The JSON body as an object, or ``InvalidRequest`` when it is another JSON value."""
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return body


def event_rows(body: Mapping[str, Any], key: str = "events") -> list[Any]:
    """The non-empty ``events`` array of a batch body; ``FieldError`` naming ``events`` if not."""
    rows = body.get(key)
    if rows is None:
        raise FieldError(key, REQUIRED)
    if not isinstance(rows, list):
        raise FieldError(key, "must be an array")
    if not rows:
        raise FieldError(key, "must contain at least one event")
    return rows


def row_fields(row: Any, prefix: str) -> Fields:
    """``Fields`` over one event object whose errors name ``<prefix>field``."""
    if not isinstance(row, dict):
        raise FieldError(prefix.rstrip(".") or "event", "must be an object")
    return Fields(row, prefix=prefix)


def required_text(fields: Fields, key: str, *, max_len: int) -> str:
    """A required, non-empty string of at most ``max_len`` characters."""
    value = fields.text(key, required=True, min_len=1, max_len=max_len)
    if value is None:  # unreachable: ``required`` raises; narrows the type
        raise fields.error(key, REQUIRED)
    return value


def translate_all(
    rows: Sequence[Any], translate_row: RowTranslator, key: str = "events"
) -> list[Event]:
    """Every row translated, or ``InvalidEvent`` for the first invalid one (all or nothing)."""
    events = []
    for index, row in enumerate(rows):
        try:
            events.append(translate_row(row_fields(row, f"{key}[{index}]."), index))
        except FieldError as exc:
            raise InvalidEvent(exc) from exc
    return events


def extras(fields: Fields) -> Struct | None:
    """Every key of the event not read so far, for ``Event.extras`` (translation is lossless);
    None when there is none. Nesting is bounded as for properties (protobuf's decoder limit)."""
    rest = fields.rest()
    check_depth(rest, prefix=fields.prefix)
    return to_struct(rest) if rest else None
