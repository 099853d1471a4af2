"""The values that cross the pipeline's seam: what a front submits and what it gets back.

A front (HTTP with a dialect adapter, or gRPC) authenticates a request, translates it into a
``Submission`` and hands it to ``Ingestor.submit``; the pipeline answers a ``Result``: one
``Outcome`` per request item, by index, plus the counts, or the request-level ``error`` that
refused it whole. The front renders that ``Result`` in its own envelope, on the first answer and
on an idempotent replay alike (the pipeline stores the ``Result``, never a rendered body).

This module belongs to the pipeline: adapters and both fronts import it; it imports neither.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

import orjson

from gateway.errors import GatewayError, restore
from gateway.pb.event_pb2 import Event, EventType

# "EVENT_TYPE_PAGE_VIEW" -> "page_view": the outbox's type column and the relay's subject token.
TYPE_NAMES = {v: n.removeprefix("EVENT_TYPE_").lower() for n, v in EventType.items()}
# The longest idempotency key any front accepts (the column's width).
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class ApiKey:
    """A secret API key (any dialect's Bearer token, header or body token)."""

    secret: str


@dataclass(frozen=True)
class ProjectRef:
    """A public project id with no secret (Databuddy's website / client id)."""

    project_id: str


Credential = ApiKey | ProjectRef


class Status(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """What became of one request item."""

    status: Status
    event_id: str = ""
    code: str = ""
    message: str = ""
    field: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Encoded:
    """Events a front has already serialized (the gRPC front stores them as the client encoded
    them): ``ids[i]``, ``types[i]`` (the outbox's type name) and ``payloads[i]`` describe one
    event, all of ``dialect`` and received at ``received_us``."""

    dialect: str
    received_us: int
    ids: Sequence[str]
    types: Sequence[str]
    payloads: Sequence[bytes | bytearray]


@dataclass(frozen=True, kw_only=True, slots=True)
class Submission:
    """One request of one (authenticated) project, as a front hands it to the pipeline.

    The request had ``size`` items. Those in ``rejected`` (by request index) were refused by the
    front; the others, in request order, are ``events`` (serialized by the pipeline) or
    ``encoded``. ``failure`` refuses the request whole (an all-or-nothing batch with an invalid
    event): nothing is stored, but with an idempotency key the refusal is, so a retry gets it
    again. An event over ``max_event_bytes`` encoded is rejected alone where ``per_item``, else
    the whole request is refused (413).
    """

    project_id: str
    endpoint: str  # the idempotency scope: "POST /batch", "grpc SubmitBatch"
    size: int
    events: Sequence[Event] = ()
    encoded: Encoded | None = None
    rejected: Mapping[int, Outcome] = field(default_factory=dict)
    failure: GatewayError | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""  # of the request, for the idempotency key (method, path, body)
    # The fingerprint an earlier version of the front gave the same request, if it changed:
    # compared only with a key stored under a fingerprint of that kind.
    earlier_fingerprint: Callable[[], str] | None = None
    per_item: bool = False
    dialect: str = ""  # the front's dialect ("grpc", "databuddy", ...), for refused items
    # The bytes of each request item as sent, by index: read only when an item is refused.
    items: Callable[[], Sequence[bytes]] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Rendered:
    """An answer rendered and stored whole before results were stored as ``Result``s; a replay
    of such a key sends it byte for byte."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class Result(Sequence[Outcome]):
    """The outcome of a submission, one ``Outcome`` per request item by index.

    Built without a per-item object: ``event_ids`` (by request index; "" where nothing was
    stored), the indexes that were ``duplicates`` and the ``rejected`` outcomes. ``error`` is set
    when the request was refused whole; ``replayed`` when this is a stored result sent again.
    ``rendered`` is set instead of everything else for a key stored in the older form.
    """

    __slots__ = ("duplicates", "error", "event_ids", "rejected", "rendered", "replayed")

    def __init__(
        self,
        event_ids: Sequence[str] = (),
        *,
        duplicates: frozenset[int] = frozenset(),
        rejected: Mapping[int, Outcome] | None = None,
        error: GatewayError | None = None,
        replayed: bool = False,
        rendered: Rendered | None = None,
    ) -> None:
        self.event_ids = event_ids
        self.duplicates = duplicates
        self.rejected: Mapping[int, Outcome] = rejected or {}
        self.error = error
        self.replayed = replayed
        self.rendered = rendered

    @property
    def accepted(self) -> int:
        if self.error is not None:
            return 0
        return len(self.event_ids) - len(self.duplicates) - len(self.rejected)

    @property
    def duplicate_count(self) -> int:
        return len(self.duplicates)

    @property
    def rejected_count(self) -> int:
        """Items refused: all of them when the request was refused whole."""
        return len(self.event_ids) if self.error is not None else len(self.rejected)

    def __len__(self) -> int:
        return len(self.event_ids)

    def _outcome(self, index: int) -> Outcome:
        rejected = self.rejected.get(index)
        if rejected is not None:
            return rejected
        status = Status.DUPLICATE if index in self.duplicates else Status.ACCEPTED
        return Outcome(status=status, event_id=self.event_ids[index])

    @overload
    def __getitem__(self, index: int) -> Outcome: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Outcome]: ...
    def __getitem__(self, index: int | slice) -> Outcome | Sequence[Outcome]:
        if isinstance(index, slice):
            return [self._outcome(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._outcome(index)

    def __iter__(self) -> Iterator[Outcome]:
        return map(self._outcome, range(len(self.event_ids)))

    # -- the stored form -----------------------------------------------------------------------

    def encode(self) -> bytes:
        """The result as stored with its idempotency key (JSON; ``decode`` reads it back)."""
        doc: dict[str, object] = {"ids": list(self.event_ids)}
        if self.duplicates:
            doc["duplicates"] = sorted(self.duplicates)
        if self.rejected:
            doc["rejected"] = [
                [index, o.event_id, o.code, o.message, o.field]
                for index, o in sorted(self.rejected.items())
            ]
        if self.error is not None:
            doc["error"] = [
                self.error.code,
                self.error.message,
                self.error.field,
                getattr(self.error, "limit", None),
            ]
        return orjson.dumps(doc)

    @classmethod
    def decode(cls, data: bytes, *, replayed: bool = True) -> Result:
        doc = orjson.loads(data)
        rejected = {
            index: Outcome(
                status=Status.REJECTED, event_id=event_id, code=code, message=message, field=field
            )
            for index, event_id, code, message, field in doc.get("rejected", ())
        }
        error = doc.get("error")
        return cls(
            doc["ids"],
            duplicates=frozenset(doc.get("duplicates", ())),
            rejected=rejected,
            error=restore(*error) if error is not None else None,
            replayed=replayed,
        )
