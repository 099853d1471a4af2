"""The adapter seam: what every dialect implements, and the values that cross it.

An adapter is pure: bytes, headers and query in; canonical ``Event``s and per-item
``Rejection``s out (``translate``); the per-event outcomes in, the vendor's status and JSON body
out (``render``, ``render_error``). It performs no I/O and imports nothing from aiohttp, grpc or
SQLAlchemy (``tests/unit/test_structure.py`` enforces this). The HTTP front does the rest:
reading the body, resolving the credential to a project, idempotency and storage.

Request flow, for one HTTP request::

    RawRequest ──translate──> Translation(credential, items, failure)
        gateway: authenticate credential → project; raise failure if any; ingest the events
    outcomes ──render──> Response          (or GatewayError ──render_error──> Response)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gateway.errors import GatewayError
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


@dataclass(frozen=True)
class ApiKey:
    """A secret API key (any dialect's Bearer token, header or body token)."""

    secret: str


@dataclass(frozen=True)
class ProjectRef:
    """A public project id with no secret (Databuddy's website / client id)."""

    project_id: str


Credential = ApiKey | ProjectRef


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


class Status(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What became of one event handed to the ingestor."""

    status: Status
    event_id: str
    code: str = ""
    message: str = ""
    field: str | None = None


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

    def render(
        self, request: RawRequest, translation: Translation, outcomes: Sequence[Outcome]
    ) -> Response:
        """The vendor's response; ``outcomes`` align with ``translation.events``."""
        ...

    def render_error(self, request: RawRequest | None, error: GatewayError) -> Response:
        """``error`` in the vendor's envelope. ``request`` is None when no route matched."""
        ...
