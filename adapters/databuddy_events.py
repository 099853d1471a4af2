"""Databuddy payload objects to canonical ``Event``s: the ``track`` and ``outgoing_link`` payloads
of ``POST /batch`` and ``POST /`` items, and the custom events of ``POST /track``.

Each builder reads one JSON object through ``Fields`` with the limits of the vendor's validator
(dialects.md §1), so a bad field raises ``FieldError`` naming it; every key without a typed home
lands in the event's ``extras``. The builders are pure: ``received_at`` is the only clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.message import Message

from adapters.base import Rejection
from adapters.fields import (
    MAX_PROPERTY_DEPTH,
    Fields,
    check_depth,
    to_struct,
    to_timestamp,
)
from gateway.pb.event_pb2 import Event, EventType

DIALECT = "databuddy"
# The vendor refuses event times more than an hour ahead of its own clock (MAX_FUTURE_MS).
MAX_FUTURE = timedelta(hours=1)
PROPERTIES_MAX_KEYS = 50
PROPERTIES_MAX_BYTES = 32 * 1024
PROPERTY_KEY_MAX_LEN = 128
PAGE_VIEW_NAMES = frozenset({"page_view", "screen_view"})
CONNECTION_TYPES = frozenset(
    {"wifi", "cellular", "ethernet", "unknown", "bluetooth", "none", "wimax", "other"}
    | {"slow-2g", "2g", "3g", "4g"}
)
SIZE_PATTERN = r"\d{2,5}x\d{2,5}"
LANGUAGE_PATTERN = r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*"
_SIZE = re.compile(SIZE_PATTERN)
_LANGUAGE = re.compile(LANGUAGE_PATTERN)
# Item-wrapper keys other than ``type``/``payload`` are kept in extras under this key, apart
# from the payload's own unknown keys (which they could otherwise collide with).
WRAPPER_EXTRAS_KEY = "$wrapper"
SCHEMA_ERROR = "Invalid event schema"
UNKNOWN_TYPE = "Unknown event type"
KINDS = ("track", "outgoing_link")


# Enum values as plain ints: protobuf's enum wrappers resolve attributes slowly (per event).
_TRACK = EventType.EVENT_TYPE_TRACK
_PAGE_VIEW = EventType.EVENT_TYPE_PAGE_VIEW
_OUTGOING_LINK = EventType.EVENT_TYPE_OUTGOING_LINK
_CUSTOM = EventType.EVENT_TYPE_CUSTOM


def _base(kind: EventType.ValueType, event_id: str, received_at: datetime) -> Event:
    stamp = to_timestamp(received_at)
    return Event(id=event_id, dialect=DIALECT, type=kind, received_at=stamp, occurred_at=stamp)


def _properties(f: Fields, event: Event) -> None:
    props = f.mapping("properties", max_keys=PROPERTIES_MAX_KEYS, max_bytes=PROPERTIES_MAX_BYTES)
    if props is None:
        return
    if any(len(key) > PROPERTY_KEY_MAX_LEN for key in props):
        raise f.error("properties", f"keys must be at most {PROPERTY_KEY_MAX_LEN} characters")
    event.properties.CopyFrom(to_struct(props))


def _put(message: Message, attr: str, value: str | float | None) -> None:
    """Sets ``attr`` only when there is a value, so that absent context leaves no empty message."""
    if value is not None and value != "":
        setattr(message, attr, value)


def _identity(f: Fields, event: Event) -> None:
    _put(event.identity, "anonymous_id", f.text("anonymousId", max_len=256))
    _put(event.identity, "session_id", f.text("sessionId", max_len=256))


def _occurred_at(f: Fields, event: Event, received_at: datetime) -> None:
    moment = f.epoch_ms("timestamp", not_after=received_at + MAX_FUTURE)
    if moment is not None:
        event.occurred_at.CopyFrom(to_timestamp(moment))


def set_extras(f: Fields, event: Event, wrapper: Mapping[str, Any] | None = None) -> None:
    """Unknown keys of the payload (and of its item wrapper) into ``event.extras``; refuses
    values nested deeper than a Struct can carry."""
    extras = f.rest()
    if wrapper:
        extras[WRAPPER_EXTRAS_KEY] = dict(wrapper)
    check_depth(extras, prefix=f.prefix, max_depth=MAX_PROPERTY_DEPTH - 1)
    if extras:
        event.extras.CopyFrom(to_struct(extras))


def track_event(f: Fields, *, default_id: str, received_at: datetime) -> Event:
    """A ``track`` payload (the browser tracker's page view or named event)."""
    event_id = f.text("eventId", max_len=512) or default_id
    name = f.text("name", required=True, min_len=1, max_len=128) or ""
    kind = _PAGE_VIEW if name in PAGE_VIEW_NAMES else _TRACK
    event = _base(kind, event_id, received_at)
    event.name = name
    _identity(f, event)
    started = f.epoch_ms("sessionStartTime", not_after=received_at + MAX_FUTURE)
    if started is not None:
        event.identity.session_started_at.CopyFrom(to_timestamp(started))
    _occurred_at(f, event, received_at)
    # The seed documents a page path (`/dashboard`); the real tracker sends the absolute URL.
    _put(event.page, "path", f.text("path", required=True, max_len=2048))
    _put(event.page, "title", f.text("title", max_len=512))
    _put(event.page, "referrer", f.text("referrer", max_len=2048))
    _put(event.device, "screen_resolution", f.text("screen_resolution", pattern=_SIZE))
    _put(event.device, "viewport_size", f.text("viewport_size", pattern=_SIZE))
    _put(event.device, "timezone", f.text("timezone", max_len=64))
    _put(event.device, "language", f.text("language", pattern=_LANGUAGE))
    # Groups of optional keys are read only when one of them is there (most trackers send few):
    # absent keys need no reading, and the order of the checks is unchanged.
    keys = f.data.keys()
    if not keys.isdisjoint(_NETWORK_KEYS):
        connection = f.text("connection_type")
        if connection is not None and connection not in CONNECTION_TYPES:
            choices = ", ".join(sorted(CONNECTION_TYPES))
            raise f.error("connection_type", "must be one of " + choices)
        _put(event.network, "connection_type", connection)
        _put(event.network, "rtt_ms", f.number("rtt", minimum=0, maximum=10_000, integer=True))
        _put(event.network, "downlink_mbps", f.number("downlink", minimum=0, maximum=10_000))
    if not keys.isdisjoint(_UTM_KEYS):
        for key, attr in _UTM:
            _put(event.campaign, attr, f.text(key, max_len=128))
    if not keys.isdisjoint(_PERFORMANCE_KEYS):
        for key, attr, maximum in _METRICS:
            _put(event.performance, attr, f.number(key, minimum=0, maximum=maximum))
        count = f.integer("interaction_count", maximum=10_000)
        _put(event.performance, "interaction_count", count)
        _put(event.performance, "page_count", f.integer("page_count", maximum=1_000))
    if "properties" in keys:
        _properties(f, event)
    return event


_UTM = (
    ("utm_source", "source"),
    ("utm_medium", "medium"),
    ("utm_campaign", "name"),
    ("utm_term", "term"),
    ("utm_content", "content"),
)
_METRICS = (
    ("load_time", "load_time_ms", 60_000),
    ("dom_ready_time", "dom_ready_time_ms", 60_000),
    ("ttfb", "ttfb_ms", 60_000),
    ("time_on_page", "time_on_page", 86_400),
    ("scroll_depth", "scroll_depth", 100),
)
_NETWORK_KEYS = frozenset({"connection_type", "rtt", "downlink"})
_UTM_KEYS = frozenset(key for key, _ in _UTM)
_PERFORMANCE_KEYS = frozenset(key for key, _, _ in _METRICS) | {"interaction_count", "page_count"}


def outgoing_link_event(f: Fields, *, received_at: datetime) -> Event:
    """An ``outgoing_link`` payload: a click on a link leaving the site (``eventId`` required)."""
    event_id = f.text("eventId", required=True, min_len=1, max_len=512) or ""
    event = _base(_OUTGOING_LINK, event_id, received_at)
    event.name = "outgoing_link"
    _put(event.link, "href", f.text("href", required=True, min_len=1, max_len=2048))
    _put(event.link, "text", f.text("text", max_len=2048))
    _identity(f, event)
    _occurred_at(f, event, received_at)
    _properties(f, event)
    return event


def custom_event(f: Fields, *, default_id: str, received_at: datetime) -> tuple[Event, str | None]:
    """A ``POST /track`` event, and the ``websiteId`` it names (the gateway checks it)."""
    name = f.text("name", required=True, min_len=1, max_len=256) or ""
    event_id = f.text("eventId", max_len=512) or default_id
    event = _base(_CUSTOM, event_id, received_at)
    event.name = name
    _put(event, "namespace", f.text("namespace", max_len=64))
    # The vendor's /track takes an integer ms or an ISO-8601 string, in the same time window.
    stamp = f.data.get("timestamp")
    if isinstance(stamp, float) and not stamp.is_integer():
        raise f.error("timestamp", "must be an integer")
    occurred = f.iso_or_epoch_ms("timestamp")
    if occurred is not None:
        if occurred > received_at + MAX_FUTURE:
            raise f.error("timestamp", "must not be in the future")
        event.occurred_at.CopyFrom(to_timestamp(occurred))
    _properties(f, event)
    _identity(f, event)
    _put(event.identity, "profile_id", f.text("profileId", max_len=256))
    website_id = f.text("websiteId", max_len=256)
    _put(event, "source", f.text("source", max_len=64))
    _put(event.page, "path", f.text("path", max_len=2048))
    return event, website_id or None


@dataclass(frozen=True, kw_only=True)
class SchemaRejection(Rejection):
    """A rejected item, with the field-level reason the vendor lists under ``errors``."""

    detail: str = ""


__all__ = [
    "DIALECT",
    "KINDS",
    "SCHEMA_ERROR",
    "SchemaRejection",
    "custom_event",
    "outgoing_link_event",
    "set_extras",
    "track_event",
]
