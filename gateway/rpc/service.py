"""The ``eventgw.v1.EventGateway`` servicer: authentication, per-event validation and
normalization, and the hand-over to the ``Ingestor``.

Authentication is ``authorization: Bearer <key>`` metadata. Events are validated one by one
(a bad event is ``EVENT_STATUS_REJECTED`` with a code; the rest are stored), normalized
(``dialect = "grpc"``, receive time, default type and occurred-at, generated ids) and handed to
the same ``Ingestor`` as REST. Request-level errors map through ``errors.GRPC_STATUS``; retryable
ones carry a ``google.rpc.RetryInfo`` detail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import NoReturn

import grpc
from google.protobuf import duration_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from adapters.base import ApiKey, Outcome, Status
from gateway.auth import Principal
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MissingCredential,
    MissingScope,
    RateLimited,
    RetryableError,
    grpc_status_name,
)
from gateway.ingest import TYPE_NAMES, IdempotencyRequest, Outcomes
from gateway.logs import current_call
from gateway.pb.event_pb2 import Event, EventType
from gateway.pb.gateway_pb2 import (
    DESCRIPTOR,
    EventStatus,
    GetSubmissionRequest,
    SubmitBatchResponse,
)
from gateway.rpc.batch import Batch
from gateway.runtime import Runtime
from gateway.storage.engine import storage_errors
from gateway.storage.events import Row
from gateway.storage.idempotency import StoredResponse
from gateway.storage.tenants import TRACK_SCOPE

log = logging.getLogger(__name__)

SERVICE = DESCRIPTOR.services_by_name["EventGateway"].full_name
ENDPOINT = "grpc SubmitBatch"
MAX_ID = 512
MAX_NAME = 1024
MAX_IDEMPOTENCY_KEY = 255
STREAM_WINDOW = 8  # batches of one stream in flight at once; answers stay in order
_ID_NAMESPACE = uuid.UUID("0b6a7c52-3c5e-4d44-9b1a-6a8f3b1f0c11")
_MIN_SECONDS, _MAX_SECONDS = 946_684_800, 4_102_444_800
# Enum values as plain ints: protobuf's enum wrappers resolve attributes slowly (hot path).
_EVENT_TYPES = frozenset(EventType.values())
_TRACK = EventType.EVENT_TYPE_TRACK
_ACCEPTED = EventStatus.EVENT_STATUS_ACCEPTED
_DUPLICATE = EventStatus.EVENT_STATUS_DUPLICATE
_REJECTED = EventStatus.EVENT_STATUS_REJECTED
_INVALID = ("invalid_event", "event is invalid", "")
Context = grpc.aio.ServicerContext[object, object]
# Payloads are built as bytearrays, which the SQLite driver binds fastest (see storage ``Row``).
_join = bytearray().join


class EventGatewayService:
    """The ``EventGateway`` methods. ``rpc.server`` registers them with its own request parsing
    (each request arrives as a ``Batch``), hence no generated servicer base class."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def SubmitBatch(self, request: Batch, context: Context) -> SubmitBatchResponse:
        try:
            principal = await self._authenticate(context)
            self._rate_limit(principal)
            return await self._submit(principal, request)
        except GatewayError as error:
            await _abort(context, error)

    async def SubmitStream(
        self,
        request_iterator: AsyncIterator[Batch],
        context: Context,
    ) -> AsyncIterator[SubmitBatchResponse]:
        # Requests are read while answers are written (a client may wait for answers before it
        # writes more): up to STREAM_WINDOW batches in flight, answered in order. An error ends
        # the stream after the answers of the batches before it.
        window: asyncio.Queue[asyncio.Task[SubmitBatchResponse] | Exception | None]
        window = asyncio.Queue(STREAM_WINDOW)
        reader: asyncio.Task[None] | None = None

        async def read(principal: Principal) -> None:
            try:
                async for request in request_iterator:
                    self._rate_limit(principal)  # every batch of a stream takes a token
                    await window.put(asyncio.create_task(self._submit(principal, request)))
            except Exception as exc:
                await window.put(exc)
            else:
                await window.put(None)

        try:
            reader = asyncio.create_task(read(await self._authenticate(context)))
            while (item := await window.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield await item
        except GatewayError as error:
            await _abort(context, error)
        finally:
            if reader is not None:
                reader.cancel()

    async def GetSubmission(
        self, request: GetSubmissionRequest, context: Context
    ) -> SubmitBatchResponse:
        try:
            principal = await self._authenticate(context)
            if not request.idempotency_key:
                raise InvalidRequest("idempotency_key is required")
            with storage_errors("submission lookup"):
                replay = await self.runtime.idempotency.lookup(
                    principal.project_id, request.idempotency_key
                )
        except GatewayError as error:
            await _abort(context, error)
        if replay is None or replay.endpoint != ENDPOINT:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no completed submission with that key")
        response = SubmitBatchResponse.FromString(replay.response.body)
        response.replayed = True
        return response

    async def _authenticate(self, context: Context) -> Principal:
        metadata = dict(context.invocation_metadata() or ())
        value = str(metadata.get("authorization", ""))
        scheme, _, secret = value.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise MissingCredential("authorization metadata with a Bearer key is required")
        principal = await self.runtime.auth.authenticate(ApiKey(secret.strip()))
        if (info := current_call.get()) is not None:
            info.project = principal.project_id
        if TRACK_SCOPE not in principal.scopes:
            raise MissingScope(f"API key missing {TRACK_SCOPE} scope", scope=TRACK_SCOPE)
        return principal

    def _rate_limit(self, principal: Principal) -> None:
        """One token of the key's bucket per batch; RESOURCE_EXHAUSTED with RetryInfo if none."""
        self.runtime.limiter.acquire(principal.key_id, principal.rate_limit)

    async def _submit(self, principal: Principal, batch: Batch) -> SubmitBatchResponse:
        request = batch.request
        settings = self.runtime.settings
        if len(request.events) > settings.max_grpc_batch_events:
            raise InvalidRequest(f"at most {settings.max_grpc_batch_events} events per batch")
        key = request.idempotency_key
        idempotency = None
        if key:
            if len(key) > MAX_IDEMPOTENCY_KEY:
                raise InvalidRequest(
                    f"idempotency_key must be at most {MAX_IDEMPOTENCY_KEY} characters"
                )
            fingerprint = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
            idempotency = IdempotencyRequest(key=key, endpoint=ENDPOINT, fingerprint=fingerprint)

        # One pass per event: validate, then store the event as the client encoded it. What the
        # gateway sets on every event (dialect, project, receive time; type and occurred-at when
        # absent) is appended to those bytes as a serialized suffix rather than set on the
        # message: protobuf keeps the last value of a scalar field it parses twice, and merges a
        # message field field by field, so the stored bytes decode to the normalized event (the
        # receive time sets both of its fields, replacing any the client sent).
        now_ns = time.time_ns()
        received = _received(now_ns)
        received_us = now_ns // 1000
        project_id = principal.project_id
        suffixes = _suffixes(project_id, received)
        max_bytes = self.runtime.settings.max_event_bytes
        rejected: dict[int, tuple[str, str, str]] = {}
        rows: list[Row] = []
        append = rows.append
        for index, (event, encoded) in enumerate(zip(request.events, batch.events, strict=True)):
            event_id = event.id
            kind = event.type
            name = event.name
            seconds = event.occurred_at.seconds
            timed = bool(seconds) or event.HasField("occurred_at")
            if (
                len(event_id) > MAX_ID
                or not name
                or len(name) > MAX_NAME
                or kind not in _EVENT_TYPES
                or (event.project_id and event.project_id != project_id)
                or (timed and not _MIN_SECONDS <= seconds <= _MAX_SECONDS)
            ):
                rejected[index] = self._validate(principal, event) or _INVALID
                continue
            if not event_id:
                seed = f"key:{key}" if key else f"request:{uuid.uuid4().hex}"
                event.id = event_id = str(uuid.uuid5(_ID_NAMESPACE, f"{seed}\x00{index}"))
                encoded += Event(id=event_id).SerializeToString()
            payload = _join((encoded, suffixes[(not kind) * 2 + (not timed)]))
            if len(payload) > max_bytes:
                message = f"event is {len(payload)} bytes, the limit is {max_bytes}"
                rejected[index] = ("too_large", message, "")
                continue
            kind = kind or _TRACK
            append((project_id, event_id, "grpc", TYPE_NAMES[kind], received_us, payload))

        def build(outcomes: Sequence[Outcome]) -> SubmitBatchResponse:
            """Results by request index: rejections where they were, the rows' outcomes between."""
            duplicates = (
                outcomes.duplicates
                if isinstance(outcomes, Outcomes)
                else frozenset(i for i, o in enumerate(outcomes) if o.status is not Status.ACCEPTED)
            )
            response = SubmitBatchResponse(
                accepted=len(rows) - len(duplicates),
                duplicates=len(duplicates),
                rejected=len(rejected),
            )
            add = response.results.add
            if not rejected and not duplicates:
                for index, row in enumerate(rows):
                    add(index=index, status=_ACCEPTED, event_id=row[1])
                return response
            events = request.events
            position = 0
            for index in range(len(events)):
                problem = rejected.get(index)
                if problem is not None:
                    code, message, field = problem
                    add(
                        index=index,
                        status=_REJECTED,
                        event_id=events[index].id,
                        code=code,
                        message=message,
                        field=field,
                    )
                    continue
                status = _DUPLICATE if position in duplicates else _ACCEPTED
                add(index=index, status=status, event_id=rows[position][1])
                position += 1
            return response

        def render(outcomes: Sequence[Outcome]) -> StoredResponse:
            return StoredResponse(status=0, body=build(outcomes).SerializeToString(), headers={})

        ingested = await self.runtime.ingestor.ingest_rows(
            project_id, rows, idempotency=idempotency, render=render
        )
        if ingested.response is not None:
            response = SubmitBatchResponse.FromString(ingested.response.body)
            response.replayed = ingested.replayed
        else:
            assert ingested.outcomes is not None
            response = build(ingested.outcomes)
        self._count(len(request.events), response)
        return response

    def _count(self, events: int, response: SubmitBatchResponse) -> None:
        """The metrics and access-log counts of one answered batch (a replay counts nothing)."""
        info = current_call.get()
        endpoint = info.endpoint if info is not None else "SubmitBatch"
        self.runtime.metrics.observe_batch("grpc", endpoint, events)
        if info is None:
            return
        info.events = (info.events or 0) + events
        if response.replayed:
            info.replays += 1
        else:
            info.accepted += response.accepted
            info.duplicates += response.duplicates
            info.rejected += response.rejected

    def _validate(self, principal: Principal, event: Event) -> tuple[str, str, str] | None:
        if len(event.id) > MAX_ID:
            return "invalid_field", f"id must be at most {MAX_ID} characters", "id"
        if not event.name:
            return "missing_field", "name is required", "name"
        if len(event.name) > MAX_NAME:
            return "invalid_field", f"name must be at most {MAX_NAME} characters", "name"
        if event.project_id and event.project_id != principal.project_id:
            return "project_mismatch", "project_id names another project than the key", "project_id"
        if event.type not in _EVENT_TYPES:
            return "invalid_field", "type is not a known EventType", "type"
        if event.HasField("occurred_at") and not (
            _MIN_SECONDS <= event.occurred_at.seconds <= _MAX_SECONDS
        ):
            return "invalid_field", "occurred_at must be between 2000 and 2100", "occurred_at"
        return None  # the size is checked on the serialized row, in ``_submit``


def _received(now_ns: int) -> Timestamp:
    """``now_ns`` as the receive time, its nanos never zero: proto3 leaves a zero field out of the
    encoding, and a client's nanos would then survive the merge (once in 10^9, 1 ns off)."""
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos or 1)


def _suffixes(project_id: str, received: Timestamp) -> tuple[bytes, bytes, bytes, bytes]:
    """The serialized normalization of an event, by ``2 * (no type) + (no occurred-at)``."""
    common = Event(dialect="grpc", project_id=project_id, received_at=received).SerializeToString()
    typed = Event(type=_TRACK).SerializeToString()
    timed = Event(occurred_at=received).SerializeToString()
    return common, common + timed, common + typed, common + typed + timed


async def _abort(context: Context, error: GatewayError) -> NoReturn:
    if (info := current_call.get()) is not None:
        info.error, info.rate_limited = error.code, isinstance(error, RateLimited)
    code = grpc.StatusCode[grpc_status_name(error)]
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if isinstance(error, RetryableError) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    rich = rpc_status.to_status(status)  # carries the details in grpc-status-details-bin
    await context.abort(rich.code, rich.details, rich.trailing_metadata)
