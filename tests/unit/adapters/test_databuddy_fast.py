"""The Databuddy ``track`` fast path (``adapters.databuddy_fast``) against the reference path
(``track_event`` + ``set_extras`` through ``Fields``): for any payload, either the fast path
declines (None) or it builds exactly the reference's event; and the payloads real trackers send
take it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.databuddy_events import (
    _LANGUAGE,
    _SIZE,
    CONNECTION_TYPES,
    MAX_FUTURE,
    set_extras,
    track_event,
)
from adapters.databuddy_fast import fast_track_event
from adapters.fields import FieldError, Fields
from gateway.pb.event_pb2 import Event

RECEIVED_AT = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
NOW_MS = int(RECEIVED_AT.timestamp() * 1000)
KEYS = [
    "eventId", "name", "anonymousId", "sessionId", "sessionStartTime", "timestamp", "path",
    "title", "referrer", "screen_resolution", "viewport_size", "timezone", "language",
    "connection_type", "rtt", "downlink", "utm_source", "utm_medium", "utm_campaign", "utm_term",
    "utm_content", "load_time", "dom_ready_time", "ttfb", "time_on_page", "scroll_depth",
    "interaction_count", "page_count", "properties", "type", "unknown",
]  # fmt: skip
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=10**13),
    st.sampled_from([0, 1, 99, 100, 101, 250.5, 1e4, 10_001, 60_000, 86_401, NOW_MS - 1000]),
    st.sampled_from([NOW_MS + 3_599_000, NOW_MS + 3_601_000, 946_684_799_999, 946_684_800_000]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "page_view", "1920x1080", "1x1", "en-US", "e", "wifi", "4g", "x" * 129]),
    st.sampled_from(["x" * 257, "x" * 513, "/p" * 1025, "America/New_York"]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
PAYLOADS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=12)


def reference(data: dict[str, Any], *, bare: bool) -> Event | None:
    f = Fields(data)
    if bare:
        f.used.add("type")
    try:
        event = track_event(f, default_id="generated", received_at=RECEIVED_AT)
        set_extras(f, event)
    except FieldError:
        return None
    return event


def fast(data: dict[str, Any], *, bare: bool) -> Event | None:
    return fast_track_event(
        data,
        default_id="generated",
        received_at=RECEIVED_AT,
        max_future=MAX_FUTURE,
        size=_SIZE,
        language=_LANGUAGE,
        connection_types=CONNECTION_TYPES,
        ignore="type" if bare else None,
    )


@settings(max_examples=600, deadline=None)
@given(data=PAYLOADS, bare=st.booleans())
def test_the_fast_path_builds_the_reference_event_or_declines(
    data: dict[str, Any], bare: bool
) -> None:
    got = fast(data, bare=bare)
    if got is not None:
        want = reference(data, bare=bare)
        assert want is not None and got == want
        assert got.SerializeToString(deterministic=True) == want.SerializeToString(
            deterministic=True
        )


@settings(max_examples=300, deadline=None)
@given(
    data=st.fixed_dictionaries(
        {"name": st.sampled_from(["page_view", "click"]), "path": st.text(max_size=30)},
        optional={
            k: VALUES for k in KEYS if k not in ("name", "path", "properties", "unknown", "type")
        },
    )
)
def test_named_payloads_agree(data: dict[str, Any]) -> None:
    got = fast(data, bare=False)
    if got is not None:
        assert got == reference(data, bare=False)


def test_the_tracker_payload_takes_the_fast_path() -> None:
    data = {
        "eventId": "evt_123",
        "name": "page_view",
        "anonymousId": "anon_456",
        "sessionId": "sess_789",
        "sessionStartTime": NOW_MS - 60_000,
        "timestamp": NOW_MS,
        "path": "/dashboard",
        "title": "Dashboard",
        "referrer": "https://google.com",
        "screen_resolution": "1920x1080",
        "viewport_size": "1440x900",
        "timezone": "America/New_York",
        "language": "en-US",
        "connection_type": "wifi",
        "rtt": 50,
        "downlink": 10.5,
        "utm_source": "newsletter",
        "load_time": 1200,
        "ttfb": 250,
        "interaction_count": 3,
    }
    got = fast(data, bare=False)
    assert got is not None
    assert got == reference(data, bare=False)
    assert fast({**data, "unknown": 1}, bare=False) is None  # extras: the reference path
    assert fast({**data, "properties": {"a": 1}}, bare=False) is None
