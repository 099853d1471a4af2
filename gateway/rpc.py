"""The gRPC front: ``eventgw.v1.EventGateway`` on grpc.aio, plus health and reflection.

Authentication is ``authorization: Bearer <key>`` metadata. Events are validated one by one
(a bad event is ``EVENT_STATUS_REJECTED`` with a code; the rest are stored), normalized
(``dialect = "grpc"``, receive time, default type and occurred-at, generated ids) and handed to
the same ``Ingestor`` as REST. Request-level errors map through ``errors.GRPC_STATUS``; retryable
ones carry a ``google.rpc.RetryInfo`` detail.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from adapters.base import ApiKey, Outcome, Status
from gateway.auth import Principal
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MissingCredential,
    MissingScope,
    RetryableError,
    grpc_status_name,
)
from gateway.ingest import IdempotencyRequest
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event, EventType
from gateway.pb.gateway_pb2 import (
    DESCRIPTOR,
    EventResult,
    EventStatus,
    GetSubmissionRequest,
    SubmitBatchRequest,
    SubmitBatchResponse,
)
from gateway.runtime import Runtime
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
M = TypeVar("M", bound=Message)
Context = grpc.aio.ServicerContext[object, object]
_STATUS = {
    Status.ACCEPTED: EventStatus.EVENT_STATUS_ACCEPTED,
    Status.DUPLICATE: EventStatus.EVENT_STATUS_DUPLICATE,
}


class EventGatewayService(gateway_pb2_grpc.EventGatewayServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def SubmitBatch(
        self, request: SubmitBatchRequest, context: Context
    ) -> SubmitBatchResponse:
        try:
            principal = await self._authenticate(context)
            return await self._submit(principal, request)
        except GatewayError as error:
            await _abort(context, error)

    async def SubmitStream(
        self,
        request_iterator: AsyncIterator[SubmitBatchRequest],
        context: Context,
    ) -> AsyncIterator[SubmitBatchResponse]:
        pending: collections.deque[asyncio.Task[SubmitBatchResponse]] = collections.deque()
        try:
            principal = await self._authenticate(context)
            async for request in request_iterator:
                pending.append(asyncio.create_task(self._submit(principal, request)))
                while pending and (len(pending) >= STREAM_WINDOW or pending[0].done()):
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        except GatewayError as error:
            await _abort(context, error)

    async def GetSubmission(
        self, request: GetSubmissionRequest, context: Context
    ) -> SubmitBatchResponse:
        try:
            principal = await self._authenticate(context)
            if not request.idempotency_key:
                raise InvalidRequest("idempotency_key is required")
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
        if TRACK_SCOPE not in principal.scopes:
            raise MissingScope(f"API key missing {TRACK_SCOPE} scope", scope=TRACK_SCOPE)
        return principal

    async def _submit(
        self, principal: Principal, request: SubmitBatchRequest
    ) -> SubmitBatchResponse:
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

        received = Timestamp()
        received.GetCurrentTime()
        results: list[EventResult | None] = [None] * len(request.events)
        valid: list[Event] = []
        positions: list[int] = []
        for index, event in enumerate(request.events):
            problem = self._validate(principal, event)
            if problem is not None:
                code, message, field = problem
                results[index] = EventResult(
                    index=index,
                    status=EventStatus.EVENT_STATUS_REJECTED,
                    event_id=event.id,
                    code=code,
                    message=message,
                    field=field,
                )
                continue
            event.dialect = "grpc"
            event.received_at.CopyFrom(received)
            if not event.HasField("occurred_at"):
                event.occurred_at.CopyFrom(received)
            if event.type == EventType.EVENT_TYPE_UNSPECIFIED:
                event.type = EventType.EVENT_TYPE_TRACK
            if not event.id:
                seed = f"key:{key}" if key else f"request:{uuid.uuid4().hex}"
                event.id = str(uuid.uuid5(_ID_NAMESPACE, f"{seed}\x00{index}"))
            valid.append(event)
            positions.append(index)

        def build(outcomes: Sequence[Outcome]) -> SubmitBatchResponse:
            merged = list(results)
            for position, outcome in zip(positions, outcomes, strict=True):
                merged[position] = EventResult(
                    index=position, status=_STATUS[outcome.status], event_id=outcome.event_id
                )
            done = [r for r in merged if r is not None]
            counts = collections.Counter(r.status for r in done)
            return SubmitBatchResponse(
                results=done,
                accepted=counts[EventStatus.EVENT_STATUS_ACCEPTED],
                duplicates=counts[EventStatus.EVENT_STATUS_DUPLICATE],
                rejected=counts[EventStatus.EVENT_STATUS_REJECTED],
            )

        def render(outcomes: Sequence[Outcome]) -> StoredResponse:
            return StoredResponse(status=0, body=build(outcomes).SerializeToString(), headers={})

        ingested = await self.runtime.ingestor.ingest(
            principal.project_id, valid, idempotency=idempotency, render=render
        )
        if ingested.response is not None:
            response = SubmitBatchResponse.FromString(ingested.response.body)
            response.replayed = ingested.replayed
            return response
        assert ingested.outcomes is not None
        return build(ingested.outcomes)

    def _validate(self, principal: Principal, event: Event) -> tuple[str, str, str] | None:
        if len(event.id) > MAX_ID:
            return "invalid_field", f"id must be at most {MAX_ID} characters", "id"
        if not event.name:
            return "missing_field", "name is required", "name"
        if len(event.name) > MAX_NAME:
            return "invalid_field", f"name must be at most {MAX_NAME} characters", "name"
        if event.project_id and event.project_id != principal.project_id:
            return "project_mismatch", "project_id names another project than the key", "project_id"
        if event.type not in EventType.values():
            return "invalid_field", "type is not a known EventType", "type"
        if event.HasField("occurred_at") and not (
            _MIN_SECONDS <= event.occurred_at.seconds <= _MAX_SECONDS
        ):
            return "invalid_field", "occurred_at must be between 2000 and 2100", "occurred_at"
        size = event.ByteSize()
        if size > self.runtime.settings.max_event_bytes:
            limit = self.runtime.settings.max_event_bytes
            return "too_large", f"event is {size} bytes, the limit is {limit}", ""
        return None


async def _abort(context: Context, error: GatewayError) -> NoReturn:
    code = grpc.StatusCode[grpc_status_name(error)]
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if isinstance(error, RetryableError) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    rich = rpc_status.to_status(status)  # carries the details in grpc-status-details-bin
    await context.abort(rich.code, rich.details, rich.trailing_metadata)


def _handlers(service: EventGatewayService) -> grpc.GenericRpcHandler[Any, Any]:
    """The EventGateway methods, with requests parsed here rather than by grpc: a body that is not
    a valid message is INVALID_ARGUMENT (grpc's own decoding would answer UNKNOWN)."""

    async def submit_batch(raw: bytes, context: Context) -> SubmitBatchResponse:
        return await service.SubmitBatch(await _parse(SubmitBatchRequest, raw, context), context)

    async def get_submission(raw: bytes, context: Context) -> SubmitBatchResponse:
        request = await _parse(GetSubmissionRequest, raw, context)
        return await service.GetSubmission(request, context)

    async def submit_stream(
        raw: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[SubmitBatchResponse]:
        async def requests() -> AsyncIterator[SubmitBatchRequest]:
            async for item in raw:
                try:
                    yield SubmitBatchRequest.FromString(item)
                except DecodeError:
                    raise InvalidRequest("request is not a valid SubmitBatchRequest") from None

        # grpc.aio streams the answers of an async generator function only.
        async for response in service.SubmitStream(requests(), context):
            yield response

    serialize = SubmitBatchResponse.SerializeToString
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "SubmitBatch": grpc.unary_unary_rpc_method_handler(
                submit_batch, response_serializer=serialize
            ),
            "SubmitStream": grpc.stream_stream_rpc_method_handler(
                submit_stream, response_serializer=serialize
            ),
            "GetSubmission": grpc.unary_unary_rpc_method_handler(
                get_submission, response_serializer=serialize
            ),
        },
    )


async def _parse(cls: type[M], raw: bytes, context: Context) -> M:
    try:
        return cls.FromString(raw)
    except DecodeError:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid {cls.DESCRIPTOR.name}"
        )


async def start_grpc_server(runtime: Runtime, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server (EventGateway, health, reflection); returns it and its bound port."""
    limit = runtime.settings.max_grpc_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1),
        ]
    )
    server.add_generic_rpc_handlers((_handlers(EventGatewayService(runtime)),))
    # grpc-stubs predates the asyncio health servicer.
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound
