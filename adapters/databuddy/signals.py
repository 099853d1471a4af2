"""The tracker's page signals and spans, schema and mapping: ``POST /vitals`` (web vitals, at most
20), ``/errors`` (client errors, at most 50), ``/engagement`` (the per-page counters sent when a
page is left, at most 20) and ``/events`` (v2 custom-event spans, at most 100), each a JSON array
validated whole, as the vendor's array schemas are: one bad item refuses the request, naming
``[index].field``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from adapters.databuddy.events import Received, received, set_extras, set_properties, stamp
from adapters.databuddy.wire import EpochMs, Properties, Text128, Text512, Text2048, parse
from adapters.fields import FieldError
from gateway.pb.event_pb2 import Engagement, ErrorReport, Event, EventType, WebVital

Visitor = bool | Literal["auto"]  # anonymizeVisitorIds: kept in extras
Count = Annotated[int, Meta(ge=0, le=65_535)]
Week = Annotated[int, Meta(ge=0, le=604_800)]


class Vital(Struct):
    path: Text2048
    metricName: Literal["FCP", "LCP", "CLS", "INP", "TTFB", "FPS"]
    metricValue: int | float
    eventId: Text512 | None = None
    timestamp: EpochMs | None = None
    anonymousId: Text128 | None = None
    sessionId: Text128 | None = None
    anonymizeVisitorIds: Visitor | None = None


class ClientError(Struct):
    path: Text2048
    message: Text2048
    eventId: Text512 | None = None
    timestamp: EpochMs | None = None
    filename: Text512 | None = None
    lineno: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    colno: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    stack: Annotated[str, Meta(max_length=4096)] | None = None
    errorType: Text128 | None = None
    anonymousId: Text128 | None = None
    sessionId: Text128 | None = None
    anonymizeVisitorIds: Visitor | None = None


class PageEngagement(Struct):
    timestamp: EpochMs
    path: Text2048
    pageIndex: Count
    exitType: Literal["navigation", "spa", "hidden", "unload"]
    timeOnPage: Week
    activeTime: Week
    timeToFirstInteraction: Annotated[int, Meta(ge=0, le=86_400_000)]
    maxScrollDepth: Annotated[int, Meta(ge=0, le=100)]
    scrollCount: Count
    clickCount: Count
    keyCount: Count
    interactionCount: Count
    copyCount: Count
    rageClickCount: Count
    deadClickCount: Count
    formFieldCount: Count
    formSubmitCount: Count
    errorCount: Count
    rageClickTarget: Annotated[str, Meta(max_length=64)] | None = None
    deadClickTarget: Annotated[str, Meta(max_length=64)] | None = None
    lastFormField: Annotated[str, Meta(max_length=64)] | None = None
    eventId: Text512 | None = None
    anonymousId: Text128 | None = None
    sessionId: Text128 | None = None
    anonymizeVisitorIds: Visitor | None = None


class Span(Struct):
    eventName: Annotated[str, Meta(min_length=1, max_length=128)]
    timestamp: EpochMs
    path: Text2048
    eventId: Text512 | None = None
    anonymousId: Text128 | None = None
    profileId: Text128 | None = None
    sessionId: Text128 | None = None
    anonymizeVisitorIds: Visitor | None = None
    properties: Properties | None = None


# Engagement's counters, by the key of ``Engagement.counts`` each lands in.
_COUNTS = {
    "scrollCount": "scroll",
    "clickCount": "click",
    "keyCount": "key",
    "interactionCount": "interaction",
    "copyCount": "copy",
    "rageClickCount": "rage_click",
    "deadClickCount": "dead_click",
    "formFieldCount": "form_field",
    "formSubmitCount": "form_submit",
    "errorCount": "error",
}
# Kept in extras (the vendor reads it to decide how to hash ids; the gateway stores them as sent).
_IN_EXTRAS = frozenset({"anonymizeVisitorIds"})


def _base(item: Any, default_id: str, at: Received, prefix: str) -> Event:
    """The fields every signal shares: id, times, page path, visitor and session."""
    limit_us = at.limit_us
    event = Event.FromString(at.base)
    event.id = item.eventId or default_id
    if item.timestamp is not None:
        event.occurred_at.seconds, event.occurred_at.nanos = stamp(item.timestamp, limit_us, prefix)
    if item.path:
        event.page.path = item.path
    if item.anonymousId:
        event.identity.anonymous_id = item.anonymousId
    if item.sessionId:
        event.identity.session_id = item.sessionId
    return event


def _vital(v: Vital, default_id: str, at: Received, prefix: str) -> Event:
    event = _base(v, default_id, at, prefix)
    event.type, event.name = EventType.EVENT_TYPE_WEB_VITAL, "web_vitals"
    event.web_vital.CopyFrom(WebVital(metric=v.metricName, value=float(v.metricValue)))
    return event


def _error(e: ClientError, default_id: str, at: Received, prefix: str) -> Event:
    event = _base(e, default_id, at, prefix)
    event.type, event.name = EventType.EVENT_TYPE_ERROR, "error"
    report = ErrorReport(message=e.message, filename=e.filename or "", stack=e.stack or "")
    report.error_type = e.errorType or ""
    if e.lineno is not None:
        report.line = e.lineno
    if e.colno is not None:
        report.column = e.colno
    event.error.CopyFrom(report)
    return event


def _engagement(g: PageEngagement, default_id: str, at: Received, prefix: str) -> Event:
    event = _base(g, default_id, at, prefix)
    event.type, event.name = EventType.EVENT_TYPE_ENGAGEMENT, "engagement"
    event.engagement.CopyFrom(
        Engagement(
            page_index=g.pageIndex,
            exit_type=g.exitType,
            time_on_page_s=g.timeOnPage,
            active_time_s=g.activeTime,
            time_to_first_interaction_ms=g.timeToFirstInteraction,
            max_scroll_depth=g.maxScrollDepth,
            counts={key: getattr(g, name) for name, key in _COUNTS.items()},
            rage_click_target=g.rageClickTarget or "",
            dead_click_target=g.deadClickTarget or "",
            last_form_field=g.lastFormField or "",
        )
    )
    return event


def _span(s: Span, default_id: str, at: Received, prefix: str) -> Event:
    event = _base(s, default_id, at, prefix)
    event.type, event.name = EventType.EVENT_TYPE_CUSTOM, s.eventName
    if s.profileId:
        event.identity.profile_id = s.profileId
    if s.properties is not None:
        set_properties(s.properties, event, prefix)
    return event


@dataclass(frozen=True)
class Signal:
    """One array endpoint: its item struct, its mapping, its limit and the ``type`` it answers."""

    struct: type[Struct]
    build: Callable[[Any, str, Received, str], Event]
    max_items: int
    answer_type: str


SIGNALS: Mapping[str, Signal] = {
    "vitals": Signal(Vital, _vital, 20, "web_vitals"),
    "errors": Signal(ClientError, _error, 50, "error"),
    "engagement": Signal(PageEngagement, _engagement, 20, "engagement"),
    "events": Signal(Span, _span, 100, "custom_event"),
}


def signal_events(
    signal: Signal, body: list[Any], at: datetime, default_id: Callable[[int], str]
) -> list[Event]:
    """The events of a whole array body; ``FieldError`` (``[index].field``) at its first bad
    item."""
    events: list[Event] = []
    shared = received(at)
    known = frozenset(signal.struct.__struct_fields__) - _IN_EXTRAS
    for index, data in enumerate(body):
        prefix = f"[{index}]."
        if not isinstance(data, dict):
            raise FieldError(f"[{index}]", "must be an object")
        item: Any = parse(data, signal.struct, prefix=prefix)
        event = signal.build(item, "" if item.eventId else default_id(index), shared, prefix)
        set_extras(event, data, known, prefix=prefix)
        events.append(event)
    return events
