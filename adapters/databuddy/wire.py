"""Databuddy's wire schema: msgspec structs with the limits of the vendor's validator
(dialects.md §1). A struct decides whether a payload is valid; ``parse`` names the offending
field of one that is not, in the words the vendor's clients see (``FieldError``).

Two ways in: ``decode_batch`` turns a whole ``/batch`` body of ``track`` items straight into
structs (no dicts; the tracker's common case), declining (None) a body with any key the structs do
not know, which then goes item by item through ``parse`` with its unknown keys kept for extras.
Checks a struct cannot express (an enumeration's message, whole numbers, the time window, the
properties' bounds) are made where the event is built (``adapters.databuddy.events``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from adapters.fields import FieldError

DIALECT = "databuddy"
# The vendor refuses event times more than an hour ahead of its own clock (MAX_FUTURE_MS).
MAX_FUTURE = timedelta(hours=1)
MIN_MS, MAX_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01 .. 2100-01-01
PROPERTIES_MAX_KEYS = 50
PROPERTIES_MAX_BYTES = 32 * 1024
PROPERTY_KEY_MAX_LEN = 128
PAGE_VIEW_NAMES = frozenset({"page_view", "screen_view"})
CONNECTION_TYPES = frozenset(
    {"wifi", "cellular", "ethernet", "unknown", "bluetooth", "none", "wimax", "other"}
    | {"slow-2g", "2g", "3g", "4g"}
)
SCHEMA_ERROR = "Invalid event schema"
UNKNOWN_TYPE = "Unknown event type"
KINDS = ("track", "outgoing_link")

# msgspec searches a pattern; the vendor matches it in full, hence the anchors. Numbers are ints
# or floats, never booleans.
Text64 = Annotated[str, Meta(max_length=64)]
Text128 = Annotated[str, Meta(max_length=128)]
Text256 = Annotated[str, Meta(max_length=256)]
Text512 = Annotated[str, Meta(max_length=512)]
Text2048 = Annotated[str, Meta(max_length=2048)]
Size = Annotated[str, Meta(pattern=r"\A\d{2,5}x\d{2,5}\Z")]
Language = Annotated[str, Meta(pattern=r"\A[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*\Z")]
Upto100 = Annotated[int, Meta(ge=0, le=100)] | Annotated[float, Meta(ge=0, le=100)]
Upto1k = Annotated[int, Meta(ge=0, le=1_000)] | Annotated[float, Meta(ge=0, le=1_000)]
Upto10k = Annotated[int, Meta(ge=0, le=10_000)] | Annotated[float, Meta(ge=0, le=10_000)]
Upto60k = Annotated[int, Meta(ge=0, le=60_000)] | Annotated[float, Meta(ge=0, le=60_000)]
Upto1Day = Annotated[int, Meta(ge=0, le=86_400)] | Annotated[float, Meta(ge=0, le=86_400)]
EpochMs = Annotated[int, Meta(ge=MIN_MS, le=MAX_MS)] | Annotated[float, Meta(ge=MIN_MS, le=MAX_MS)]
Properties = Annotated[dict[str, Any], Meta(max_length=PROPERTIES_MAX_KEYS)]


class TrackPayload(Struct):
    """A ``track`` payload: the browser tracker's page view or named event. Unknown keys are
    ignored here (the caller keeps them in extras); null is an absent key."""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    path: Text2048
    eventId: Text512 | None = None
    anonymousId: Text256 | None = None
    sessionId: Text256 | None = None
    sessionStartTime: EpochMs | None = None
    timestamp: EpochMs | None = None
    title: Text512 | None = None
    referrer: Text2048 | None = None
    screen_resolution: Size | None = None
    viewport_size: Size | None = None
    timezone: Text64 | None = None
    language: Language | None = None
    connection_type: str | None = None  # one of CONNECTION_TYPES
    rtt: Upto10k | None = None  # a whole number
    downlink: Upto10k | None = None
    utm_source: Text128 | None = None
    utm_medium: Text128 | None = None
    utm_campaign: Text128 | None = None
    utm_term: Text128 | None = None
    utm_content: Text128 | None = None
    load_time: Upto60k | None = None
    dom_ready_time: Upto60k | None = None
    ttfb: Upto60k | None = None
    time_on_page: Upto1Day | None = None
    scroll_depth: Upto100 | None = None
    interaction_count: Upto10k | None = None  # a whole number
    page_count: Upto1k | None = None  # a whole number
    properties: Properties | None = None


class LinkPayload(Struct):
    """An ``outgoing_link`` payload: a click on a link leaving the site."""

    eventId: Annotated[str, Meta(min_length=1, max_length=512)]
    href: Annotated[str, Meta(min_length=1, max_length=2048)]
    text: Text2048 | None = None
    anonymousId: Text256 | None = None
    sessionId: Text256 | None = None
    timestamp: EpochMs | None = None
    properties: Properties | None = None


class CustomPayload(Struct):
    """A ``POST /track`` custom event (server side); ``timestamp`` is ms or ISO-8601."""

    name: Annotated[str, Meta(min_length=1, max_length=256)]
    eventId: Text512 | None = None
    namespace: Text64 | None = None
    timestamp: EpochMs | str | None = None
    properties: Properties | None = None
    anonymousId: Text256 | None = None
    sessionId: Text256 | None = None
    profileId: Text256 | None = None
    websiteId: Text256 | None = None
    source: Text64 | None = None
    path: Text2048 | None = None


class _ExactTrack(TrackPayload, forbid_unknown_fields=True):
    pass


class _WrappedTrack(Struct, forbid_unknown_fields=True):
    payload: _ExactTrack
    type: Literal["track"] = "track"


class _BareTrack(_ExactTrack, forbid_unknown_fields=True):
    type: Literal["track"] = "track"


_WRAPPED = msgspec.json.Decoder(list[_WrappedTrack])
_BARE = msgspec.json.Decoder(list[_BareTrack])
_INVALID = (msgspec.ValidationError, msgspec.DecodeError)


def decode_batch(body: bytes) -> list[TrackPayload] | None:
    """The payloads of a ``/batch`` body made only of valid ``track`` items (all wrapped in
    ``{"type", "payload"}``, or all bare) with no key the structs do not know; else None."""
    try:
        return [item.payload for item in _WRAPPED.decode(body)]
    except _INVALID:
        pass
    try:
        return list(_BARE.decode(body))
    except _INVALID:
        return None


Payload = TypeVar("Payload", bound=Struct)


def parse(data: dict[str, Any], kind: type[Payload], *, prefix: str = "") -> Payload:
    """``data`` as a ``kind``, or the ``FieldError`` naming its offending field."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise field_error(str(exc), prefix) from None


# msgspec's messages, in the words the vendor's clients see.
_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Expected `[^`]*`, got `null`"), "required"),
    (re.compile(r"Expected `str` of length >= 1\b"), "required"),
    (re.compile(r"Expected `str` of length >= (\d+)"), "must be at least {} characters"),
    (re.compile(r"Expected `str` of length <= (\d+)"), "must be at most {} characters"),
    (re.compile(r"Expected `str` matching regex"), "has an invalid format"),
    (re.compile(r"Expected `object` of length <= (\d+)"), "must have at most {} keys"),
    (re.compile(r"Expected `(?:int|float)` >= ([\d.]+)"), "must be at least {:g}"),
    (re.compile(r"Expected `(?:int|float)` <= ([\d.]+)"), "must be at most {:g}"),
    (re.compile(r"Expected `(?:int|float)[^`]*`, got"), "must be a number"),
    (re.compile(r"Expected `str[^`]*`, got"), "must be a string"),
    (re.compile(r"Expected `object[^`]*`, got"), "must be an object"),
)
_MISSING = re.compile(r"Object missing required field `([^`]+)`(?: - at `\$(.*)`)?")
_AT = re.compile(r" - at `\$\.?(.*)`$")


def field_error(message: str, prefix: str = "") -> FieldError:
    """The ``FieldError`` of a msgspec ``ValidationError`` message."""
    if missing := _MISSING.match(message):
        at = (missing.group(2) or "").lstrip(".")
        return FieldError(f"{prefix}{at + '.' if at else ''}{missing.group(1)}", "required")
    at = _AT.search(message)
    # A value of a mapping is "$.traits[...]": msgspec does not say which key; name the mapping.
    field = f"{prefix}{at.group(1).removesuffix('[...]')}" if at else prefix.rstrip(".")
    for pattern, words in _MESSAGES:
        if found := pattern.match(message):
            values = [float(v) if "g" in words else v for v in found.groups()]
            return FieldError(field, words.format(*values))
    return FieldError(field, message.split(" - at ")[0])
