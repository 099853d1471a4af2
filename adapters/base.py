"""The adapter seam: what every dialect implements, and the values that cross it.

An adapter is pure: bytes, headers and query in; canonical ``Event``s and per-item
``Rejection``s out (``translate``); the pipeline's ``Result`` in, the vendor's status and JSON
body out (``render``, ``render_error``). It performs no I/O and imports nothing from aiohttp,
grpc, SQLAlchemy or the gateway's storage (``tests/gateway/test_structure.py`` enforces this).
The HTTP front does the rest: reading the body, resolving the credential to a project and
submitting to the pipeline. The values shared with the pipeline (``Credential``, ``Result``)
are the pipeline's own, in ``gateway.model``.

Request flow, for one HTTP request::

    RawRequest ──translate──> Translation(credential, items, failure)
        front: authenticate credential → project; Submission ──Ingestor.submit──> Result
    Result ──render──> Response          (or GatewayError ──render_error──> Response)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gateway.errors import GatewayError
from gateway.model import Credential, Result
from gateway.pb.event_pb2 import Event


@dataclass(frozen=True, kw_only=True)
class Route:
    """One endpoint a dialect serves: ``POST /batch`` is ``Route(path="/batch", name="batch")``."""

    path: str
    name: str
    method: str = "POST"
    # Body cap before (and after) decompression for this route; None: the gateway's default.
    max_body_bytes: int | None = None
    # Answer browsers' CORS preflight (OPTIONS) and echo their Origin.
    cors: bool = False
    # The route answers per item: an event too large to store is rejected alone (else the
    # request is refused whole, 413, keeping an all-or-nothing batch all-or-nothing).
    per_item: bool = False
    # Where a batch body holds its items when it is an object (``{"events": [...]}``); a body
    # that is an array is its items, any other body one item. Read to keep a refused item.
    items_key: str = "events"


@dataclass(frozen=True, kw_only=True)
class RawRequest:
    """An HTTP request as the gateway received it, body already decompressed."""

    route: Route
    headers: Mapping[str, str]  # keys lower-case
    query: Mapping[str, str]
    body: bytes
    media_type: str  # "application/json", "text/plain", ... lower-case, without parameters
    received_at: datetime  # timezone-aware UTC; stamp it on every event
    request_id: str  # unique per request; seed for generated event ids when there is no key
    idempotency_key: str | None = None
    # The path as requested: a route with ``{name}`` parameters reads them from it
    # (``adapters.registry.parameters``).
    path: str = ""


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """One input item that failed validation; it is reported, not stored."""

    index: int  # position of the item in the request
    message: str
    code: str = "invalid_event"
    field: str | None = None  # the offending field, e.g. "name" or "events[3].user_id"
    event_id: str | None = None
    kind: str | None = None  # the item's dialect-level type, when the dialect reports it


@dataclass(frozen=True, kw_only=True)
class Translation:
    """What an adapter made of a request.

    ``items`` are in request order: an ``Event`` to store, or a ``Rejection``. ``failure`` is a
    request-level error reported after authentication (an all-or-nothing batch with an invalid
    event); when there is no credential to check, it is reported at once.
    """

    credential: Credential | None = None
    items: Sequence[Event | Rejection] = ()
    failure: GatewayError | None = None
    # Project ids the body itself names (Databuddy ``websiteId``): each must be the credential's.
    claimed_projects: frozenset[str] = frozenset()

    @property
    def events(self) -> list[Event]:
        return [item for item in self.items if isinstance(item, Event)]


@dataclass(frozen=True, kw_only=True)
class Response:
    """A rendered vendor response."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class Adapter(Protocol):
    """One REST dialect. Listed explicitly in ``adapters/__init__.py``."""

    name: str  # the canonical Event.dialect value, e.g. "databuddy"
    routes: Sequence[Route]
    # Path prefixes under which unknown paths and wrong methods get this dialect's envelope.
    prefixes: Sequence[str]
    # Extra request headers browsers may send (CORS), for routes with ``cors=True``.
    cors_allow_headers: Sequence[str]

    def translate(self, request: RawRequest) -> Translation:
        """Parse and validate ``request``; never raises for bad input (put it in the result)."""
        ...

    def render(self, request: RawRequest, translation: Translation, result: Result) -> Response:
        """The vendor's response: ``result[i]`` is what became of ``translation.items[i]``, on
        the first answer and on a replay alike (a replay translates the same request again)."""
        ...

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        """``error`` in the vendor's envelope. ``request`` is None when no route matched."""
        ...
