"""Databuddy's wire schema (``adapters.databuddy.wire``): the one path from a payload to an event
or to the rejection naming its offending field. A ``/batch`` body decoded whole into structs gives
exactly the items it gives item by item; the tracker's payloads are decoded whole; every value at
a key's edge is either accepted or rejected naming that key, in the vendor's words."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import RawRequest, Rejection
from adapters.databuddy import BATCH, Databuddy, beacon_item
from adapters.databuddy.envelope import SchemaRejection
from adapters.databuddy.wire import decode_batch
from gateway.pb.event_pb2 import Event

ADAPTER = Databuddy()

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


def request(items: list[Any], *, ascii_only: bool = True) -> RawRequest:
    return RawRequest(
        route=BATCH,
        headers={},
        query={"client_id": "site"},
        body=json.dumps(items, ensure_ascii=ascii_only).encode(),
        media_type="application/json",
        received_at=RECEIVED_AT,
        request_id="wire",
    )


def one_by_one(raw: RawRequest) -> list[Event | Rejection]:
    return [beacon_item(raw, i, item) for i, item in enumerate(json.loads(raw.body))]


@settings(max_examples=300, deadline=None)
@given(
    payloads=st.lists(tracker_payloads(), max_size=4), bare=st.booleans(), ascii_only=st.booleans()
)
def test_a_batch_decoded_whole_gives_the_items_it_gives_one_by_one(
    payloads: list[dict[str, Any]], bare: bool, ascii_only: bool
) -> None:
    items = [{"type": "track", **p} if bare else {"type": "track", "payload": p} for p in payloads]
    raw = request(items, ascii_only=ascii_only)
    assert list(ADAPTER.translate(raw).items) == one_by_one(raw)


def test_the_trackers_batches_are_decoded_whole() -> None:
    wrapped = [
        {"type": "track", "payload": {**TRACKER_PAYLOAD, "eventId": f"e{i}"}} for i in range(3)
    ]
    bare = [{"type": "track", **TRACKER_PAYLOAD}, {**TRACKER_PAYLOAD, "properties": {"a": 1}}]
    for items in (wrapped, bare):
        assert decode_batch(request(items).body) is not None
    for odd in (
        {"type": "track", "payload": {**TRACKER_PAYLOAD, "unknown": 1}},  # extras to keep
        {"type": "track", "payload": TRACKER_PAYLOAD, "sdk": "web"},  # wrapper extras
        {"type": "outgoing_link", "payload": {"eventId": "l", "href": "https://x"}},
    ):
        assert decode_batch(request([*wrapped, odd]).body) is None


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key, values in EDGES.items() for value in values]
)
def test_a_value_at_an_edge_is_accepted_or_rejected_naming_its_key(key: str, value: Any) -> None:
    [item] = one_by_one(request([{"type": "track", "payload": {**TRACKER_PAYLOAD, key: value}}]))
    if isinstance(item, Rejection):
        assert isinstance(item, SchemaRejection) and item.field == key, item
        assert item.detail


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("name", None, "required"),
        ("name", "", "required"),
        ("name", "x" * 129, "must be at most 128 characters"),
        ("name", 1, "must be a string"),
        ("rtt", True, "must be a number"),
        ("rtt", 2.5, "must be an integer"),
        ("scroll_depth", 101, "must be at most 100"),
        ("load_time", -1, "must be at least 0"),
        ("screen_resolution", "1x1", "has an invalid format"),
        ("connection_type", "5g", "must be one of "),
        ("timestamp", NOW_MS + 3_601_000, "must not be in the future"),
        ("properties", [1], "must be an object"),
        ("properties", {f"k{i}": i for i in range(51)}, "must have at most 50 keys"),
    ],
)
def test_a_rejection_says_why_in_the_vendors_words(key: str, value: Any, words: str) -> None:
    [item] = one_by_one(request([{"type": "track", "payload": {**TRACKER_PAYLOAD, key: value}}]))
    assert isinstance(item, SchemaRejection) and item.field == key
    assert item.detail.startswith(words), item.detail


def test_unknown_keys_are_kept_and_the_tracker_payload_is_mapped_whole() -> None:
    [event] = one_by_one(
        request([{"type": "track", "payload": {**TRACKER_PAYLOAD, "plan": "pro"}}])
    )
    assert isinstance(event, Event)
    assert dict(event.extras) == {"plan": "pro"}
    assert (event.id, event.name, event.page.path) == ("evt_123", "page_view", "/dashboard")
    assert event.performance.page_count == 2 and event.network.rtt_ms == 50
