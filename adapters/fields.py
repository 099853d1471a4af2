"""Shared parsing and validation for adapters: JSON bodies, typed fields, properties, ids, times.

``Fields`` reads a vendor JSON object key by key, checking types and limits, and remembers which
keys it consumed, so that ``rest()`` returns everything without a typed home (the canonical
event's ``extras``: translation is lossless). A failed check raises ``FieldError``, which an
adapter turns into a per-item ``Rejection`` or an all-or-nothing ``ValidationFailed``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.base import RawRequest, Response
from gateway.errors import MalformedBody, UnsupportedMediaType
from gateway.ids import uuid5, uuid7

JSON_MEDIA_TYPES = frozenset({"application/json", "text/plain", ""})
# Nesting deeper than this is refused in any properties object: protobuf's own decoder refuses
# messages nested past 100 levels, and a Struct spends two levels per JSON level.
MAX_PROPERTY_DEPTH = 32
# Top-level keys of a batch body besides its events and credential are kept on every event's
# extras under this key (translation is lossless).
ENVELOPE_EXTRAS = "$batch"
_ID_NAMESPACE = uuid.UUID("6f1c1a47-2b9e-4d0a-9a55-3c1f7d0e8b21")
_ID_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
# Unix milliseconds outside this range are refused as event times (2000-01-01 .. 2100-01-01).
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000


class FieldError(ValueError):
    """One field of one item is missing, of the wrong type, or out of bounds."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_json(request: RawRequest) -> Any:
    """The request body as JSON; ``UnsupportedMediaType`` / ``MalformedBody`` when it is not."""
    if request.media_type not in JSON_MEDIA_TYPES:
        raise UnsupportedMediaType(f"Unsupported content type: {request.media_type}")
    if not request.body.strip():
        raise MalformedBody("Request body is empty")
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"Malformed JSON: {exc.msg}") from exc


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status=status, body=orjson.dumps(body), headers=dict(headers or {}))


def generated_id(request: RawRequest, index: int) -> str:
    """The id of item ``index`` when it brings none (``gateway.ids``): from the Idempotency-Key
    when there is one (a retry maps to the same ids and deduplicates), else time-ordered from the
    request's receive time and id."""
    if request.idempotency_key:
        name = f"{request.route.path}\x00{request.idempotency_key}\x00{index}"
        return uuid5(_ID_NAMESPACE_BYTES, name)
    return uuid7(request.request_id, request.received_at, index)


def batch_envelope(body: Mapping[str, Any], known: Collection[str]) -> dict[str, Any]:
    """The keys of a batch body other than ``known`` (for ``extras[ENVELOPE_EXTRAS]`` of every
    event); ``FieldError`` when one is nested deeper than a Struct can be stored."""
    envelope = {k: v for k, v in body.items() if k not in known}
    check_depth(envelope)
    return envelope


def check_depth(
    values: Mapping[str, Any], *, prefix: str = "", max_depth: int = MAX_PROPERTY_DEPTH
) -> None:
    """Refuse kept values (extras) nested deeper than ``max_depth``, past what a protobuf
    ``Struct`` can hold: ``FieldError`` naming ``<prefix><key>``."""
    for key, value in values.items():
        if json_depth(value) > max_depth:
            raise FieldError(
                f"{prefix}{key}", f"must be nested at most {MAX_PROPERTY_DEPTH} levels deep"
            )


def to_struct(value: Mapping[str, Any]) -> Struct:
    struct = Struct()
    struct.update(value)
    return struct


def to_timestamp(moment: datetime) -> Timestamp:
    """``Timestamp.FromDatetime`` (a naive ``moment`` is UTC), by integer arithmetic rather than
    protobuf's Python-level calendar conversion."""
    delta = moment - (_EPOCH if moment.tzinfo is not None else _NAIVE_EPOCH)
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value: a scalar is 0, ``{}`` and ``[]`` are 1."""
    depth, level = 0, [(value, 0)]
    while level:
        node, d = level.pop()
        if isinstance(node, dict):
            depth = max(depth, d + 1)
            level.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            depth = max(depth, d + 1)
            level.extend((v, d + 1) for v in node)
    return depth


class Fields:
    """Typed, bounded access to one JSON object of a vendor payload."""

    def __init__(self, data: Mapping[str, Any], *, prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> FieldError:
        return FieldError(f"{self.prefix}{key}", message)

    def _get(self, key: str, required: bool) -> Any:
        self.used.add(key)
        value = self.data.get(key)
        if value is None and required:
            raise self.error(key, "required")
        return value

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        max_len: int | None = None,
        min_len: int = 0,
        pattern: re.Pattern[str] | None = None,
        strip: bool = False,
    ) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        if strip:
            value = value.strip()
        if len(value) < min_len:
            raise self.error(
                key, "required" if not value else f"must be at least {min_len} characters"
            )
        if max_len is not None and len(value) > max_len:
            raise self.error(key, f"must be at most {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, "has an invalid format")
        return value

    def number(
        self,
        key: str,
        *,
        required: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
    ) -> float | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "must be a number")
        if integer and not float(value).is_integer():
            raise self.error(key, "must be an integer")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum:g}")
        return float(value)

    def integer(
        self, key: str, *, required: bool = False, minimum: int = 0, maximum: int | None = None
    ) -> int | None:
        value = self.number(key, required=required, minimum=minimum, maximum=maximum, integer=True)
        return None if value is None else int(value)

    def mapping(
        self,
        key: str,
        *,
        required: bool = False,
        max_keys: int | None = None,
        max_bytes: int | None = None,
        max_depth: int = MAX_PROPERTY_DEPTH,
    ) -> dict[str, Any] | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, "must be an object")
        if max_keys is not None and len(value) > max_keys:
            raise self.error(key, f"must have at most {max_keys} keys")
        if json_depth(value) > max_depth:
            raise self.error(key, f"must be nested at most {max_depth} levels deep")
        if max_bytes is not None and len(orjson.dumps(value)) > max_bytes:
            raise self.error(key, f"must be at most {max_bytes} bytes serialized")
        return value

    def epoch_ms(
        self, key: str, *, required: bool = False, not_after: datetime | None = None
    ) -> datetime | None:
        """Unix milliseconds (integer or float) as an aware datetime, within 2000..2100 and,
        when given, not after ``not_after``."""
        value = self.number(key, required=required, minimum=_MIN_MS, maximum=_MAX_MS)
        if value is None:
            return None
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
        if not_after is not None and moment > not_after:
            raise self.error(key, "must not be in the future")
        return moment

    def iso_or_epoch_ms(self, key: str, *, required: bool = False) -> datetime | None:
        """An ISO-8601 string or Unix milliseconds, as an aware datetime."""
        value = self.data.get(key)
        if isinstance(value, str):
            self.used.add(key)
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.error(key, "must be an ISO-8601 timestamp") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            if not _MIN_MS <= moment.timestamp() * 1000 <= _MAX_MS:
                raise self.error(key, "is out of range")
            return moment
        return self.epoch_ms(key, required=required)

    def rest(self) -> dict[str, Any]:
        """Every key not read so far (for the event's extras)."""
        return {k: v for k, v in self.data.items() if k not in self.used}
