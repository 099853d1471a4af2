"""A client for internal services: ``EventClient`` (threads) and ``AsyncEventClient`` (asyncio)
batch events, send them with ``SubmitBatch`` (or ``SubmitStream``), retry what is worth
retrying with the same idempotency key, and count every event's fate.

Importing it needs only grpcio and protobuf: nothing of the server (a test holds this).

::

    with EventClient("127.0.0.1:50051", api_key) as client:
        client.track("order_completed", user_id="u-1", properties={"total": 129.5})
"""

from gateway.client.aio import AsyncEventClient
from gateway.client.buffer import BufferFull, ClientClosed, Counters, Policy, Rejection
from gateway.client.events import track_event, uuid7
from gateway.client.options import Options
from gateway.client.retry import Backoff
from gateway.client.sync import EventClient

__all__ = [
    "AsyncEventClient",
    "Backoff",
    "BufferFull",
    "ClientClosed",
    "Counters",
    "EventClient",
    "Options",
    "Policy",
    "Rejection",
    "track_event",
    "uuid7",
]
