"""The request bodies of ``eventgw bench``, built from pre-serialized templates.

Every body is byte concatenation around fixed-width unique event ids, so that a load generator
spends its CPU on sending rather than on building messages: a gRPC ``SubmitBatchRequest`` of
canonical events, a Databuddy tracker page view for ``/batch``, a custom event for ``/track``, and
the stored form of a canonical event (the rows of the raw limit).
"""

from __future__ import annotations

import time

from gateway.client.events import batch_request, varint  # the client's framing
from gateway.pb.event_pb2 import Event, EventType

GRPC_BATCH = 500  # events per gRPC SubmitBatch / SubmitStream message
HTTP_BATCH = 100  # events per Databuddy /batch request (the vendor's maximum)

# A Databuddy tracker page view, as the browser SDK batches them (the seed's shape).
BEACON = (
    b'{"type":"track","payload":{"eventId":"%s","name":"page_view","anonymousId":"anon_456",'
    b'"sessionId":"sess_789","sessionStartTime":%d,"timestamp":%d,"path":"/dashboard",'
    b'"title":"Dashboard","referrer":"https://google.com","screen_resolution":"1920x1080",'
    b'"viewport_size":"1440x900","timezone":"America/New_York","language":"en-US",'
    b'"load_time":1200,"ttfb":250}}'
)
# A server-side custom event to /track (the seed's shape).
CUSTOM = (
    b'{"eventId":"%s","name":"button_clicked","namespace":"ui","properties":{"button_id":'
    b'"signup","page":"/pricing"},"anonymousId":"user-123","sessionId":"session-456"}'
)

# One stored row of the outbox: (project_id, event_id, dialect, event_type, received_at, payload).
StoredRow = tuple[str, str, str, str, int, bytes]


def template_event(project_id: str = "") -> Event:
    """A typical server-side event: name, identity, page, a few properties."""
    event = Event(
        project_id=project_id,
        type=EventType.EVENT_TYPE_TRACK,
        name="order_completed",
        namespace="checkout",
        source="bench",
    )
    event.occurred_at.GetCurrentTime()
    event.identity.user_id = "user-42"
    event.identity.anonymous_id = "anon-4f7d0a1c"
    event.identity.session_id = "sess-9b2e"
    event.page.path = "/checkout/complete"
    event.page.title = "Thank you"
    event.properties.update({"order_id": "ord-123456", "total": 129.5, "currency": "EUR"})
    return event


class EventIds:
    """Fixed-width unique ids, so every serialized event of a run has the same length."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode()
        self.next = 0

    def take(self, n: int) -> list[bytes]:
        start, self.next = self.next, self.next + n
        return [b"%s%010d" % (self.prefix, i) for i in range(start, start + n)]


def batch_request_bytes(ids: list[bytes], tail: bytes, key: str = "") -> bytes:
    """A serialized ``SubmitBatchRequest`` of events ``id + tail`` (field 2, repeated), with
    ``key`` as its idempotency key (field 1) when given, framed as the client frames its own."""
    body_len = 1 + len(varint(len(ids[0]))) + len(ids[0]) + len(tail)
    head = b"\x12" + varint(body_len) + b"\x0a" + varint(len(ids[0]))
    events = [head + i + tail for i in ids]
    return batch_request(key, events) if key else b"".join(events)


def databuddy_batch(ids: list[bytes], now_ms: int) -> bytes:
    """A Databuddy ``/batch`` body: one tracker page view per id."""
    items = [BEACON % (i, now_ms - 60_000, now_ms) for i in ids]
    return b"[" + b",".join(items) + b"]"


def custom_event(event_id: bytes) -> bytes:
    """A ``/track`` body: one custom event."""
    return CUSTOM % event_id


def stored_payload_tail(project_id: str) -> bytes:
    """The serialized canonical event as the gateway stores it, without its id (field 1)."""
    event = template_event(project_id)
    event.dialect = "grpc"
    event.received_at.GetCurrentTime()
    return event.SerializeToString()


def stored_rows(ids: list[bytes], project_id: str, tail: bytes) -> list[StoredRow]:
    """Outbox rows of events ``id + tail``, as the gateway writes them for gRPC."""
    received = time.time_ns() // 1000
    head = b"\x0a" + varint(len(ids[0]))
    return [(project_id, i.decode(), "grpc", "track", received, head + i + tail) for i in ids]
