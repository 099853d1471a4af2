"""Databuddy's payloads as canonical ``Event``s: the one mapping from the wire structs
(``adapters.databuddy.wire``) to the model, with the checks a struct cannot express (each a
``FieldError`` naming its field). Every key without a typed home lands in ``extras``. Pure:
``received_at`` is the only clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from adapters.databuddy.wire import (
    CONNECTION_TYPES,
    DIALECT,
    MAX_FUTURE,
    MAX_MS,
    MIN_MS,
    PAGE_VIEW_NAMES,
    PROPERTIES_MAX_BYTES,
    PROPERTY_KEY_MAX_LEN,
    CustomPayload,
    LinkPayload,
    TrackPayload,
)
from adapters.fields import (
    MAX_PROPERTY_DEPTH,
    FieldError,
    check_depth,
    json_depth,
    to_struct,
    to_timestamp,
)
from gateway.pb.event_pb2 import Event, EventType

# Item-wrapper keys other than ``type``/``payload`` are kept in extras under this key, apart
# from the payload's own unknown keys (which they could otherwise collide with).
WRAPPER_EXTRAS_KEY = "$wrapper"
TRACK_FIELDS = frozenset(TrackPayload.__struct_fields__)
LINK_FIELDS = frozenset(LinkPayload.__struct_fields__)
CUSTOM_FIELDS = frozenset(CustomPayload.__struct_fields__)

# Enum values as plain ints: protobuf's enum wrappers resolve attributes slowly (per event).
_TRACK, _PAGE_VIEW = EventType.EVENT_TYPE_TRACK, EventType.EVENT_TYPE_PAGE_VIEW
_OUTGOING_LINK, _CUSTOM = EventType.EVENT_TYPE_OUTGOING_LINK, EventType.EVENT_TYPE_CUSTOM
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def track_event(p: TrackPayload, default_id: str, at: Received, prefix: str = "") -> Event:
    """A ``track`` payload: ``eventId``, else ``default_id``."""
    limit_us = at.limit_us
    event = Event.FromString(at.base)  # the request's common part: dialect, times
    identity = event.identity
    if p.timestamp is not None:
        event.occurred_at.seconds, event.occurred_at.nanos = stamp(p.timestamp, limit_us, prefix)
    if p.sessionStartTime is not None:
        started = stamp(p.sessionStartTime, limit_us, prefix, "sessionStartTime")
        identity.session_started_at.seconds, identity.session_started_at.nanos = started
    # An empty text is an absent one: setting it would make its message present.
    if p.anonymousId:
        identity.anonymous_id = p.anonymousId
    if p.sessionId:
        identity.session_id = p.sessionId
    page = event.page
    if p.path:
        page.path = p.path
    if p.title:
        page.title = p.title
    if p.referrer:
        page.referrer = p.referrer
    device = event.device
    if p.screen_resolution is not None:
        device.screen_resolution = p.screen_resolution
    if p.viewport_size is not None:
        device.viewport_size = p.viewport_size
    if p.timezone:
        device.timezone = p.timezone
    if p.language is not None:
        device.language = p.language
    if p.connection_type is not None or p.rtt is not None or p.downlink is not None:
        _network(p, event, prefix)
    if p.utm_source or p.utm_medium or p.utm_campaign or p.utm_term or p.utm_content:
        campaign = event.campaign
        if p.utm_source:
            campaign.source = p.utm_source
        if p.utm_medium:
            campaign.medium = p.utm_medium
        if p.utm_campaign:
            campaign.name = p.utm_campaign
        if p.utm_term:
            campaign.term = p.utm_term
        if p.utm_content:
            campaign.content = p.utm_content
    _performance(p, event, prefix)
    if p.properties is not None:
        set_properties(p.properties, event, prefix)
    event.id = p.eventId or default_id
    event.type = _PAGE_VIEW if p.name in PAGE_VIEW_NAMES else _TRACK
    event.name = p.name
    return event


def link_event(p: LinkPayload, at: Received, prefix: str = "") -> Event:
    """An ``outgoing_link`` payload (its ``eventId`` is required)."""
    limit_us = at.limit_us
    event = Event.FromString(at.base)
    event.id, event.type, event.name = p.eventId, _OUTGOING_LINK, "outgoing_link"
    event.link.href = p.href
    if p.text:
        event.link.text = p.text
    if p.anonymousId:
        event.identity.anonymous_id = p.anonymousId
    if p.sessionId:
        event.identity.session_id = p.sessionId
    if p.timestamp is not None:
        event.occurred_at.seconds, event.occurred_at.nanos = stamp(p.timestamp, limit_us, prefix)
    if p.properties is not None:
        set_properties(p.properties, event, prefix)
    return event


def custom_event(p: CustomPayload, default_id: str, at: Received, prefix: str = "") -> Event:
    """A ``POST /track`` custom event; its ``websiteId`` is the caller's to check."""
    limit_us = at.limit_us
    event = Event.FromString(at.base)
    event.id, event.type, event.name = p.eventId or default_id, _CUSTOM, p.name
    if p.namespace:
        event.namespace = p.namespace
    if isinstance(p.timestamp, str):
        moment = _iso(p.timestamp, prefix)
        if _us(moment) > limit_us:
            raise FieldError(f"{prefix}timestamp", "must not be in the future")
        event.occurred_at.CopyFrom(to_timestamp(moment))
    elif p.timestamp is not None:
        if isinstance(p.timestamp, float) and not p.timestamp.is_integer():
            raise FieldError(f"{prefix}timestamp", "must be an integer")
        event.occurred_at.seconds, event.occurred_at.nanos = stamp(p.timestamp, limit_us, prefix)
    if p.properties is not None:
        set_properties(p.properties, event, prefix)
    identity = event.identity
    for attr, value in (
        ("anonymous_id", p.anonymousId),
        ("session_id", p.sessionId),
        ("profile_id", p.profileId),
    ):
        if value:
            setattr(identity, attr, value)
    if p.source:
        event.source = p.source
    if p.path:
        event.page.path = p.path
    return event


def set_extras(
    event: Event,
    data: Mapping[str, Any],
    known: frozenset[str],
    wrapper: Mapping[str, Any] | None = None,
    prefix: str = "",
) -> None:
    """The keys of ``data`` outside ``known`` (and the item wrapper's) into ``event.extras``;
    refuses values nested deeper than a Struct can carry."""
    extras = {k: v for k, v in data.items() if k not in known}
    if wrapper:
        extras[WRAPPER_EXTRAS_KEY] = dict(wrapper)
    if extras:
        check_depth(extras, prefix=prefix, max_depth=MAX_PROPERTY_DEPTH - 1)
        event.extras.CopyFrom(to_struct(extras))


def _network(p: TrackPayload, event: Event, prefix: str) -> None:
    network = event.network
    if p.connection_type is not None:
        if p.connection_type not in CONNECTION_TYPES:
            choices = ", ".join(sorted(CONNECTION_TYPES))
            raise FieldError(f"{prefix}connection_type", "must be one of " + choices)
        if p.connection_type:
            network.connection_type = p.connection_type
    if p.rtt is not None:
        if not float(p.rtt).is_integer():
            raise FieldError(f"{prefix}rtt", "must be an integer")
        network.rtt_ms = float(p.rtt)
    if p.downlink is not None:
        network.downlink_mbps = float(p.downlink)


def _performance(p: TrackPayload, event: Event, prefix: str) -> None:
    """The page's performance figures, spelled out (a loop over a table costs ~10% of a page
    view's translation)."""
    metrics = (p.load_time, p.dom_ready_time, p.ttfb, p.time_on_page, p.scroll_depth)
    counts = (("interaction_count", p.interaction_count), ("page_count", p.page_count))
    if all(value is None for value in metrics) and all(value is None for _, value in counts):
        return
    for key, value in counts:
        if value is not None and not float(value).is_integer():
            raise FieldError(f"{prefix}{key}", "must be an integer")
    performance = event.performance
    if p.load_time is not None:
        performance.load_time_ms = float(p.load_time)
    if p.dom_ready_time is not None:
        performance.dom_ready_time_ms = float(p.dom_ready_time)
    if p.ttfb is not None:
        performance.ttfb_ms = float(p.ttfb)
    if p.time_on_page is not None:
        performance.time_on_page = float(p.time_on_page)
    if p.scroll_depth is not None:
        performance.scroll_depth = float(p.scroll_depth)
    if p.interaction_count is not None:
        performance.interaction_count = int(p.interaction_count)
    if p.page_count is not None:
        performance.page_count = int(p.page_count)


def set_properties(props: dict[str, Any], event: Event, prefix: str) -> None:
    field = f"{prefix}properties"
    if json_depth(props) > MAX_PROPERTY_DEPTH:
        raise FieldError(field, f"must be nested at most {MAX_PROPERTY_DEPTH} levels deep")
    if len(orjson.dumps(props)) > PROPERTIES_MAX_BYTES:
        raise FieldError(field, f"must be at most {PROPERTIES_MAX_BYTES} bytes serialized")
    if any(len(key) > PROPERTY_KEY_MAX_LEN for key in props):
        raise FieldError(field, f"keys must be at most {PROPERTY_KEY_MAX_LEN} characters")
    event.properties.CopyFrom(to_struct(props))


class Received(NamedTuple):
    """What a request's events share: serialized (dialect; received and default occurred-at
    times), and the latest event time the request accepts, in microseconds. Made once a request
    (``received``) and handed to each event's builder."""

    base: bytes
    limit_us: int


@lru_cache(maxsize=16)
def received(received_at: datetime) -> Received:
    """The ``Received`` of a request received at ``received_at``."""
    stamp = to_timestamp(received_at)
    base = Event(dialect=DIALECT, received_at=stamp, occurred_at=stamp).SerializeToString()
    return Received(base, _us(received_at + MAX_FUTURE))


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def stamp(value: float, limit_us: int, prefix: str, key: str = "timestamp") -> tuple[int, int]:
    """Unix milliseconds as (seconds, nanos), exact for whole milliseconds; ``FieldError`` when
    later than ``limit_us``."""
    if type(value) is int:
        if value * 1000 > limit_us:
            raise FieldError(f"{prefix}{key}", "must not be in the future")
        seconds, ms = divmod(value, 1000)
        return seconds, ms * 1_000_000
    moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    if _us(moment) > limit_us:
        raise FieldError(f"{prefix}{key}", "must not be in the future")
    stamp = to_timestamp(moment)
    return stamp.seconds, stamp.nanos


def _iso(value: str, prefix: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"{prefix}timestamp", "must be an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not MIN_MS <= moment.timestamp() * 1000 <= MAX_MS:
        raise FieldError(f"{prefix}timestamp", "is out of range")
    return moment
