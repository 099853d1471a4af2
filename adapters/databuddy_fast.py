"""The fast path for the Databuddy tracker's ``track`` payloads: msgspec checks a payload against
the vendor validator's limits in one call (``TrackPayload``), then ``_event`` sets what it carries.

The reference path (``track_event`` + ``set_extras`` through ``Fields``, in
``adapters.databuddy_events``) reads every known key in the vendor's order, which is what decides
the field a rejection names. Most payloads are valid and carry a dozen of its forty keys, so this
module takes the ones it builds exactly like the reference and declines (None) the rest: a failing
check, an unknown key (it belongs in ``extras``), ``properties``. The caller then takes the
reference path, which produces the exact event or rejection;
``tests/adapters/databuddy/test_fast_path.py`` checks that both paths agree.

Two ways in: ``fast_track_event`` for one payload already parsed, and ``fast_batch`` for a whole
``/batch`` body of wrapped ``track`` items, decoded from its JSON bytes straight into
``TrackPayload``s (no dicts in between). A body it declines is parsed again by the caller: orjson
stays the parser that decides what is malformed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from adapters.databuddy_events import (
    CONNECTION_TYPES,
    DIALECT,
    LANGUAGE_PATTERN,
    MAX_FUTURE,
    PAGE_VIEW_NAMES,
    SIZE_PATTERN,
)
from adapters.fields import to_timestamp
from gateway.pb.event_pb2 import Event, EventType

_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000  # as adapters.fields.Fields.epoch_ms
_TRACK, _PAGE_VIEW = EventType.EVENT_TYPE_TRACK, EventType.EVENT_TYPE_PAGE_VIEW
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# The validator's limits as msgspec constraints. msgspec searches a pattern; the reference
# matches it in full, hence the anchors. Numbers are ints or floats, never booleans.
Text64 = Annotated[str, Meta(max_length=64)]
Text128 = Annotated[str, Meta(max_length=128)]
Text256 = Annotated[str, Meta(max_length=256)]
Text512 = Annotated[str, Meta(max_length=512)]
Text2048 = Annotated[str, Meta(max_length=2048)]
Size = Annotated[str, Meta(pattern=rf"\A(?:{SIZE_PATTERN})\Z")]
Language = Annotated[str, Meta(pattern=rf"\A(?:{LANGUAGE_PATTERN})\Z")]
Upto100 = Annotated[int, Meta(ge=0, le=100)] | Annotated[float, Meta(ge=0, le=100)]
Upto1k = Annotated[int, Meta(ge=0, le=1_000)] | Annotated[float, Meta(ge=0, le=1_000)]
Upto10k = Annotated[int, Meta(ge=0, le=10_000)] | Annotated[float, Meta(ge=0, le=10_000)]
Upto60k = Annotated[int, Meta(ge=0, le=60_000)] | Annotated[float, Meta(ge=0, le=60_000)]
Upto1Day = Annotated[int, Meta(ge=0, le=86_400)] | Annotated[float, Meta(ge=0, le=86_400)]
_YEARS_2000_TO_2100 = Meta(ge=_MIN_MS, le=_MAX_MS)
EpochMs = Annotated[int, _YEARS_2000_TO_2100] | Annotated[float, _YEARS_2000_TO_2100]


class TrackPayload(Struct, forbid_unknown_fields=True):
    """A ``track`` payload with no extras and no properties; null is an absent key."""

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
    connection_type: str | None = None  # one of CONNECTION_TYPES, checked in ``_event``
    rtt: Upto10k | None = None  # integer-valued, checked in ``_event``
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
    interaction_count: Upto10k | None = None  # integer-valued
    page_count: Upto1k | None = None  # integer-valued
    properties: None = None  # any other value is the reference path's to read


class BareTrackPayload(TrackPayload, forbid_unknown_fields=True):
    """A bare item (the real tracker's form): its ``type`` is the item's, not the payload's."""

    type: Any = None


class TrackItem(Struct, forbid_unknown_fields=True):
    """A ``{"type": "track", "payload": {...}}`` item with nothing else in its wrapper."""

    payload: TrackPayload
    type: Literal["track"] = "track"


_BATCH = msgspec.json.Decoder(list[TrackItem])
_INVALID = (msgspec.ValidationError, msgspec.DecodeError)


def fast_track_event(
    data: dict[str, Any], *, default_id: str, received_at: datetime, bare: bool = False
) -> Event | None:
    """``track_event`` + ``set_extras`` for a valid payload with no extras or properties; None
    for anything else (take the reference path). ``bare``: ``data`` is the item itself, whose
    ``type`` key the payload does not own."""
    try:
        payload = msgspec.convert(data, BareTrackPayload if bare else TrackPayload)
    except msgspec.ValidationError:
        return None
    return _event(payload, default_id, *_received(received_at))


def fast_batch(
    body: bytes, received_at: datetime, default_id: Callable[[int], str]
) -> list[Event] | None:
    """The events of a ``/batch`` body made only of wrapped ``track`` items this path builds;
    None for any other body. ``default_id(index)`` names an item that brings no ``eventId``."""
    try:
        items = _BATCH.decode(body)
    except _INVALID:
        return None
    base, limit_us = _received(received_at)
    events: list[Event] = []
    for index, item in enumerate(items):
        payload = item.payload
        event = _event(payload, "" if payload.eventId else default_id(index), base, limit_us)
        if event is None:
            return None
        events.append(event)
    return events


def _event(p: TrackPayload, default_id: str, base: bytes, limit_us: int) -> Event | None:
    """The event of a checked payload; None when a check msgspec cannot express fails."""
    event = Event.FromString(base)  # the request's common part: dialect, times
    identity = event.identity
    if p.timestamp is not None:
        if (stamp := _epoch_ms(p.timestamp, limit_us)) is None:
            return None
        event.occurred_at.seconds, event.occurred_at.nanos = stamp
    if p.sessionStartTime is not None:
        if (stamp := _epoch_ms(p.sessionStartTime, limit_us)) is None:
            return None
        identity.session_started_at.seconds, identity.session_started_at.nanos = stamp
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
        network = event.network
        if p.connection_type is not None:
            if p.connection_type not in CONNECTION_TYPES:
                return None
            network.connection_type = p.connection_type
        if p.rtt is not None:
            if not float(p.rtt).is_integer():
                return None
            network.rtt_ms = float(p.rtt)
        if p.downlink is not None:
            network.downlink_mbps = float(p.downlink)
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
    if not _performance(p, event):
        return None
    event.id = p.eventId or default_id
    event.type = _PAGE_VIEW if p.name in PAGE_VIEW_NAMES else _TRACK
    event.name = p.name
    return event


def _performance(p: TrackPayload, event: Event) -> bool:
    """The page's performance figures; False when a count is not a whole number. Spelled out,
    like the campaign's, where ``track_event`` loops over its ``_METRICS`` and ``_UTM`` tables:
    here the loops cost ~10% of the path (the tests pin both paths to the same fields)."""
    metrics = (p.load_time, p.dom_ready_time, p.ttfb, p.time_on_page, p.scroll_depth)
    counts = (p.interaction_count, p.page_count)
    if all(value is None for value in metrics) and all(value is None for value in counts):
        return True
    if any(value is not None and not float(value).is_integer() for value in counts):
        return False
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
    return True


@lru_cache(maxsize=16)
def _received(received_at: datetime) -> tuple[bytes, int]:
    """What a request's events share, serialized (dialect; received and default occurred-at),
    and the latest event time the request accepts, in microseconds."""
    stamp = to_timestamp(received_at)
    base = Event(dialect=DIALECT, received_at=stamp, occurred_at=stamp).SerializeToString()
    return base, _us(received_at + MAX_FUTURE)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _epoch_ms(value: float, limit_us: int) -> tuple[int, int] | None:
    """``to_timestamp(Fields.epoch_ms(...))`` as (seconds, nanos): integer milliseconds without
    datetimes (exact); None when later than ``limit_us``."""
    if type(value) is int:
        if value * 1000 > limit_us:
            return None
        seconds, ms = divmod(value, 1000)
        return seconds, ms * 1_000_000
    moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    if _us(moment) > limit_us:
        return None
    stamp = to_timestamp(moment)
    return stamp.seconds, stamp.nanos
