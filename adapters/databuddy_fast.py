"""The fast path for the Databuddy tracker's ``track`` payloads: one pass over the keys present,
each checked and set on the event as it comes.

``track_event`` (``adapters.databuddy_events``) reads every known key through ``Fields``, key by
key, in the vendor's order, which is what decides the field a rejection names. Most payloads are
valid and carry a dozen of the forty keys, so this module first tries a single pass over the keys
that are there, with the same checks, setting each field as it goes. It gives up
(returns None) on anything it does not handle identically: a failing check, an unknown key (that
belongs in ``extras``), ``properties``. The caller then takes the reference path, which produces
the exact event or rejection; ``tests/unit/adapters/test_databuddy_fast.py`` checks that both
paths agree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.fields import to_timestamp
from gateway.pb.event_pb2 import Event, EventType

DIALECT = "databuddy"
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000  # as adapters.fields.Fields.epoch_ms
_PAGE_VIEW_NAMES = frozenset({"page_view", "screen_view"})
_TRACK, _PAGE_VIEW = EventType.EVENT_TYPE_TRACK, EventType.EVENT_TYPE_PAGE_VIEW
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# What ``track_event`` reads, by key: (kind, limits..., submessage, field).
_TEXT_FIELD, _NUMBER_FIELD, _TIME_FIELD, _PATTERN_FIELD, _OTHER = range(5)
_SPEC: Mapping[str, tuple[Any, ...]] = {
    "anonymousId": (_TEXT_FIELD, 256, "identity", "anonymous_id"),
    "sessionId": (_TEXT_FIELD, 256, "identity", "session_id"),
    "title": (_TEXT_FIELD, 512, "page", "title"),
    "referrer": (_TEXT_FIELD, 2048, "page", "referrer"),
    "timezone": (_TEXT_FIELD, 64, "device", "timezone"),
    "utm_source": (_TEXT_FIELD, 128, "campaign", "source"),
    "utm_medium": (_TEXT_FIELD, 128, "campaign", "medium"),
    "utm_campaign": (_TEXT_FIELD, 128, "campaign", "name"),
    "utm_term": (_TEXT_FIELD, 128, "campaign", "term"),
    "utm_content": (_TEXT_FIELD, 128, "campaign", "content"),
    # (kind, maximum, integer-valued, submessage, field, stored as int)
    "rtt": (_NUMBER_FIELD, 10_000, True, "network", "rtt_ms", False),
    "downlink": (_NUMBER_FIELD, 10_000, False, "network", "downlink_mbps", False),
    "load_time": (_NUMBER_FIELD, 60_000, False, "performance", "load_time_ms", False),
    "dom_ready_time": (_NUMBER_FIELD, 60_000, False, "performance", "dom_ready_time_ms", False),
    "ttfb": (_NUMBER_FIELD, 60_000, False, "performance", "ttfb_ms", False),
    "time_on_page": (_NUMBER_FIELD, 86_400, False, "performance", "time_on_page", False),
    "scroll_depth": (_NUMBER_FIELD, 100, False, "performance", "scroll_depth", False),
    "interaction_count": (_NUMBER_FIELD, 10_000, True, "performance", "interaction_count", True),
    "page_count": (_NUMBER_FIELD, 1_000, True, "performance", "page_count", True),
    "timestamp": (_TIME_FIELD,),
    "sessionStartTime": (_TIME_FIELD,),
    "screen_resolution": (_PATTERN_FIELD,),
    "viewport_size": (_PATTERN_FIELD,),
    "language": (_PATTERN_FIELD,),
    "eventId": (_OTHER,),
    "name": (_OTHER,),
    "path": (_OTHER,),
    "connection_type": (_OTHER,),
}


def fast_track_event(
    data: Mapping[str, Any],
    *,
    default_id: str,
    received_at: datetime,
    max_future: timedelta,
    size: re.Pattern[str],
    language: re.Pattern[str],
    connection_types: frozenset[str],
    ignore: str | None = None,
) -> Event | None:
    """``track_event`` + ``set_extras`` for a valid payload with no extras or properties; None
    for anything else (take the reference path)."""
    base, limit_us = _received(received_at, max_future)
    event = Event.FromString(base)  # the request's common part: dialect, times
    event_id, name, path = default_id, None, None
    for key, value in data.items():
        if value is None or key == ignore:  # a null is an absent key to ``Fields``
            continue
        spec = _SPEC.get(key)
        if spec is None:  # properties, or a key for extras
            return None
        kind = type(value)
        code = spec[0]
        if code == _TEXT_FIELD:
            if kind is not str or len(value) > spec[1]:
                return None
            if value:
                setattr(getattr(event, spec[2]), spec[3], value)
        elif code == _NUMBER_FIELD:
            if kind is not int and kind is not float:
                return None
            _, maximum, integer, message, field, as_int = spec
            if not 0 <= value <= maximum or (integer and not float(value).is_integer()):
                return None
            setattr(getattr(event, message), field, int(value) if as_int else float(value))
        elif code == _TIME_FIELD:
            if (kind is not int and kind is not float) or not _MIN_MS <= value <= _MAX_MS:
                return None
            stamp = _epoch_ms(value, limit_us)
            if stamp is None:
                return None
            target = event.occurred_at if key == "timestamp" else event.identity.session_started_at
            target.seconds, target.nanos = stamp
        elif code == _PATTERN_FIELD:
            if kind is not str or not (language if key == "language" else size).fullmatch(value):
                return None
            setattr(event.device, key, value)
        elif key == "eventId":
            if kind is not str or len(value) > 512:
                return None
            event_id = value or default_id
        elif key == "name":
            if kind is not str or not 1 <= len(value) <= 128:
                return None
            name = value
        elif key == "path":
            if kind is not str or len(value) > 2048:
                return None
            path = value
        else:  # connection_type
            if kind is not str or value not in connection_types:
                return None
            event.network.connection_type = value
    if name is None or path is None:
        return None
    if path:
        event.page.path = path
    event.id = event_id
    event.type = _PAGE_VIEW if name in _PAGE_VIEW_NAMES else _TRACK
    event.name = name
    return event


@functools.lru_cache(maxsize=16)
def _received(received_at: datetime, max_future: timedelta) -> tuple[bytes, int]:
    """What a request's events share, serialized (dialect; received and default occurred-at),
    and the latest event time the request accepts, in microseconds."""
    stamp = to_timestamp(received_at)
    base = Event(dialect=DIALECT, received_at=stamp, occurred_at=stamp).SerializeToString()
    return base, _us(received_at + max_future)


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
