"""The Databuddy ``track`` fast path (``adapters.databuddy_fast``) against the reference path
(``track_event`` + ``set_extras`` through ``Fields``): for any payload, and any ``/batch`` body
decoded whole, either the fast path declines (None) or it builds exactly the reference's events;
and the payloads real trackers send take it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.databuddy_events import set_extras, track_event
from adapters.databuddy_fast import fast_batch, fast_track_event
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


_EMOJI = "\U0001f600"  # one character, four UTF-8 bytes: limits count characters


def _text(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.text(max_size=12), st.sampled_from(["", "x" * limit, _EMOJI * limit]))


def _text_edges(limit: int) -> list[Any]:
    return ["x" * (limit + 1), _EMOJI * (limit + 1), 7, True, None]


def _number(maximum: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(min_value=0, max_value=maximum),
        st.floats(min_value=0, max_value=maximum),
        st.sampled_from([0, maximum, float(maximum)]),
    )


def _number_edges(maximum: int) -> list[Any]:
    return [maximum + 1, maximum + 0.5, -1, -0.0, 2.5, True, "1", None]


_NOW_LIMIT = NOW_MS + 3_600_000  # RECEIVED_AT + 1 h, truncated to the millisecond
_MOMENTS = [NOW_MS, NOW_MS - 60_000, _NOW_LIMIT, 946_684_800_000, float(NOW_MS) + 0.5]
_SIZES = ["1920x1080", "10x10", "12345x99999"]
_LANGUAGES = ["en-US", "zh-Hant-TW", "de"]
_TEXT_LIMITS = {"eventId": 512, "anonymousId": 256, "sessionId": 256, "title": 512}
_TEXT_LIMITS |= {"referrer": 2048, "timezone": 64}
_TEXT_LIMITS |= {f"utm_{k}": 128 for k in ("source", "medium", "campaign", "term", "content")}
_NUMBER_LIMITS = {"rtt": 10_000, "downlink": 10_000, "load_time": 60_000}
_NUMBER_LIMITS |= {"dom_ready_time": 60_000, "ttfb": 60_000, "time_on_page": 86_400}
_NUMBER_LIMITS |= {"scroll_depth": 100, "interaction_count": 10_000, "page_count": 1_000}
# Each key with valid values of its own kind (what real trackers send) ...
VALID: dict[str, st.SearchStrategy[Any]] = {
    **{key: _text(limit) for key, limit in _TEXT_LIMITS.items()},
    **{key: _number(limit) for key, limit in _NUMBER_LIMITS.items()},
    "sessionStartTime": st.sampled_from(_MOMENTS),
    "timestamp": st.sampled_from(_MOMENTS),
    "screen_resolution": st.sampled_from(_SIZES),
    "viewport_size": st.sampled_from(_SIZES),
    "language": st.sampled_from(_LANGUAGES),
    "connection_type": st.sampled_from(["wifi", "4g", "slow-2g", "ethernet"]),
}
# ... and the values around its limits, where the fast path must decline exactly when the
# reference rejects (or, for the last two keys, always: they are the reference's to read).
_BAD_SIZES = ["1920x1080\n", "1x1", "123456x10", " 10x10", "", 1920]
EDGES: dict[str, list[Any]] = {
    **{key: _text_edges(limit) for key, limit in _TEXT_LIMITS.items()},
    **{key: _number_edges(limit) for key, limit in _NUMBER_LIMITS.items()},
    "name": ["", "x" * 128, "x" * 129, _EMOJI * 129, None, 1],
    "path": ["", "/p" * 1024, "/p" * 1025, None, 1],
    "sessionStartTime": [_NOW_LIMIT + 1, 946_684_799_999, _NOW_LIMIT + 0.4, _NOW_LIMIT + 0.6],
    "timestamp": [_NOW_LIMIT + 1, 4_102_444_800_001, NOW_MS / 7, True, "1", None],
    "screen_resolution": _BAD_SIZES,
    "viewport_size": _BAD_SIZES,
    "language": ["en-US\n", "e", "en-", "en_US", "", None],
    "connection_type": ["5g", "WIFI", "", None, 4],
    "properties": [{"plan": "pro"}, None],
    "unknown": [1],
}
TRACKER_PAYLOAD = {  # every key, each valid
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
    **{f"utm_{k}": k for k in ("source", "medium", "campaign", "term", "content")},
    "load_time": 1200,
    "dom_ready_time": 800.5,
    "ttfb": 250,
    "time_on_page": 12.25,
    "scroll_depth": 80,
    "interaction_count": 3,
    "page_count": 2.0,
}


@st.composite
def tracker_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A valid tracker payload, half of the time with one key at one of its edges."""
    names = st.sampled_from(["page_view", "screen_view", "click"])
    data = draw(st.fixed_dictionaries({"name": names, "path": _text(2048)}, optional=VALID))
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(EDGES)))
        data[key] = draw(st.sampled_from(EDGES[key]))
    return data


def reference(data: dict[str, Any], *, bare: bool, default_id: str = "generated") -> Event | None:
    f = Fields(data)
    if bare:
        f.used.add("type")
    try:
        event = track_event(f, default_id=default_id, received_at=RECEIVED_AT)
        set_extras(f, event)
    except FieldError:
        return None
    return event


def fast(data: dict[str, Any], *, bare: bool) -> Event | None:
    return fast_track_event(data, default_id="generated", received_at=RECEIVED_AT, bare=bare)


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


def _agrees(data: dict[str, Any]) -> bool:
    """The fast path builds the reference's event exactly when the reference accepts one
    (payloads with extras or properties excepted: those it declines)."""
    got, want = fast(data, bare=False), reference(data, bare=False)
    if got is None and want is not None:
        return data.get("properties") is not None or "unknown" in data
    return got == want


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key, values in EDGES.items() for value in values]
)
def test_each_edge_of_each_key_agrees(key: str, value: Any) -> None:
    assert _agrees({**TRACKER_PAYLOAD, key: value})


@settings(max_examples=400, deadline=None)
@given(data=tracker_payloads())
def test_tracker_payloads_take_the_fast_path_exactly_when_the_reference_accepts_them(
    data: dict[str, Any],
) -> None:
    assert _agrees(data)


def test_the_tracker_payload_takes_the_fast_path() -> None:
    data = TRACKER_PAYLOAD
    got = fast(data, bare=False)
    assert got is not None
    assert got == reference(data, bare=False)
    assert fast({**data, "unknown": 1}, bare=False) is None  # extras: the reference path
    assert fast({**data, "properties": {"a": 1}}, bare=False) is None


@settings(max_examples=300, deadline=None)
@given(payloads=st.lists(tracker_payloads(), max_size=4), ascii_only=st.booleans())
def test_a_batch_decoded_whole_is_the_reference_events_or_declined(
    payloads: list[dict[str, Any]], ascii_only: bool
) -> None:
    # The standard library's encoder: escapes (or not) non-ASCII text, writes any integer.
    items = [{"type": "track", "payload": p} for p in payloads]
    body = json.dumps(items, ensure_ascii=ascii_only).encode()
    got = fast_batch(body, RECEIVED_AT, lambda index: f"generated-{index}")
    if got is None:
        return
    want = [reference(p, bare=False, default_id=f"generated-{i}") for i, p in enumerate(payloads)]
    assert got == want


def test_a_tracker_batch_is_decoded_whole_unless_an_item_needs_the_reference() -> None:
    page_view = {
        "name": "page_view",
        "path": "/dashboard",
        "anonymousId": "anon_456",
        "timestamp": NOW_MS,
        "screen_resolution": "1920x1080",
        "load_time": 1200,
    }
    items = [{"type": "track", "payload": {**page_view, "eventId": f"e{i}"}} for i in range(3)]
    got = fast_batch(orjson.dumps(items), RECEIVED_AT, lambda index: "unused")
    assert got is not None and [e.id for e in got] == ["e0", "e1", "e2"]
    assert got[0] == reference(items[0]["payload"], bare=False)
    unnamed = fast_batch(orjson.dumps([{"payload": page_view}]), RECEIVED_AT, str)
    assert unnamed is not None and unnamed[0].id == "0"  # no eventId: the caller's id
    for odd in (
        {"type": "track", "payload": {**page_view, "properties": {"a": 1}}},
        {"type": "track", "payload": page_view, "sdk": "web"},  # wrapper extras
        {"type": "outgoing_link", "payload": {"eventId": "l", "href": "https://x"}},
        {"type": "track", "payload": {**page_view, "timestamp": NOW_MS + 4_000_000}},  # future
        page_view,  # bare items take the item-by-item path
    ):
        assert fast_batch(orjson.dumps([*items, odd]), RECEIVED_AT, str) is None
    assert (
        fast_batch(b'[{"type":"track","payload":{"name":"\\ud800","path":""}}]', RECEIVED_AT, str)
        is None
    )
    assert fast_batch(b"{}", RECEIVED_AT, str) is None
