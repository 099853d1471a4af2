"""Serving the gRPC front: method registration (requests parsed by us, so a body that is not a
valid message is INVALID_ARGUMENT rather than grpc's UNKNOWN), each call's ``RequestInfo`` and
access line, the readiness-driven health service, reflection, and starting the grpc.aio server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.access import GRPC_REQUEST_ID, RequestInfo, finish, request_id
from gateway.config import Settings
from gateway.errors import InvalidRequest
from gateway.health import Health
from gateway.pb.gateway_pb2 import GetSubmissionRequest, SubmitBatchRequest, SubmitBatchResponse
from gateway.rpc.batch import Batch
from gateway.rpc.service import SERVICE, Context, EventGatewayService, abort
from gateway.runtime import Runtime


@contextlib.asynccontextmanager
async def call(
    context: grpc.aio.ServicerContext[Any, Any], method: str, runtime: Runtime
) -> AsyncIterator[RequestInfo]:
    """Serve one gRPC call as ``RequestInfo``: request id in and out, one line and the metrics
    at the end, whatever the outcome (the status ``abort`` set, else OK)."""
    metadata = dict(context.invocation_metadata() or ())
    info = RequestInfo(
        request_id=request_id(str(metadata.get(GRPC_REQUEST_ID) or "") or None),
        transport="grpc",
        method=method,
        path=f"/{SERVICE}/{method}",
        dialect="grpc",
        endpoint=method,
    )
    subject = list((context.auth_context() or {}).get("x509_subject", ()))
    if subject:
        info.client_subject = subject[0].decode(errors="replace")
    try:
        await context.send_initial_metadata(((GRPC_REQUEST_ID, info.request_id),))
        yield info
        info.code = "OK"
    except BaseException:
        aborted = context.code()
        if isinstance(aborted, grpc.StatusCode):
            info.code = aborted.name
        else:
            info.code = "CANCELLED" if context.cancelled() else "UNKNOWN"
        raise
    finally:
        info.status = grpc.StatusCode[info.code].value[0]
        finish(info, runtime.metrics.observe_request, log_line=runtime.settings.access_log)


def _handlers(service: EventGatewayService) -> grpc.GenericRpcHandler[Any, Any]:
    """The EventGateway methods, with requests parsed here rather than by grpc: a body that is not
    a valid message is INVALID_ARGUMENT (grpc's own decoding would answer UNKNOWN)."""

    runtime = service.runtime

    # Each call runs inside ``call``: request id, one access-log line, the request metrics.
    async def submit_batch(raw: bytes, context: Context) -> SubmitBatchResponse:
        async with call(context, "SubmitBatch", runtime) as info:
            try:
                batch = Batch.parse(raw)
            except DecodeError:
                await _invalid(SubmitBatchRequest, context, info)
            return await service.SubmitBatch(batch, context, info)

    async def get_submission(raw: bytes, context: Context) -> SubmitBatchResponse:
        async with call(context, "GetSubmission", runtime) as info:
            try:
                request = GetSubmissionRequest.FromString(raw)
            except DecodeError:
                await _invalid(GetSubmissionRequest, context, info)
            return await service.GetSubmission(request, context, info)

    async def submit_stream(
        raw: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[SubmitBatchResponse]:
        async def requests() -> AsyncIterator[Batch]:
            async for item in raw:
                try:
                    yield Batch.parse(item)
                except DecodeError:
                    raise InvalidRequest("request is not a valid SubmitBatchRequest") from None

        # grpc.aio streams the answers of an async generator function only.
        async with call(context, "SubmitStream", runtime) as info:
            async for response in service.SubmitStream(requests(), context, info):
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


async def _invalid(cls: type[Message], context: Context, info: RequestInfo) -> NoReturn:
    error = InvalidRequest(f"request is not a valid {cls.DESCRIPTOR.name}")
    await abort(context, error, info)


# grpc-stubs predates the asyncio health servicer.
class ReadinessHealthServicer(health.aio.HealthServicer):  # type: ignore[misc,name-defined]
    """The standard health service, SERVING only while the gateway is ready: each ``Check``
    runs the checks of ``/readyz`` (at most once a second) and updates every service's status,
    which ``Watch`` streams then follow."""

    def __init__(self, readiness: Health) -> None:
        super().__init__()
        self.readiness = readiness

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        ready = (await self.readiness.cached()).ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else NOT_SERVING
        for name in ("", SERVICE):
            await self.set(name, status)
        response: health_pb2.HealthCheckResponse = await super().Check(request, context)
        return response


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _options(settings: Settings) -> list[tuple[str, int]]:
    """Channel arguments: message limits, and the connection limits of the README's table."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    limit = settings.max_grpc_message_bytes
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 1),
        # Ping an idle client to find dead connections; close one that does not answer.
        ("grpc.keepalive_time_ms", ms(settings.grpc_keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", ms(settings.grpc_keepalive_timeout_seconds)),
        # Keepalive enforcement: a client pinging more often than this is sent GOAWAY (the
        # C core's GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS is named so).
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            ms(settings.grpc_min_ping_interval_seconds),
        ),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_permit_without_calls", 1),
        # Connections are recycled (clients reconnect, rebalancing across workers and hosts).
        ("grpc.max_connection_age_ms", ms(settings.grpc_max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", ms(settings.grpc_max_connection_age_grace_seconds)),
    ]


async def start_grpc_server(
    runtime: Runtime, host: str, port: int, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server (EventGateway, health, reflection), over TLS with ``credentials``;
    returns it and its bound port."""
    server = grpc.aio.server(options=_options(runtime.settings))
    server.add_generic_rpc_handlers((_handlers(EventGatewayService(runtime)),))
    health_servicer = ReadinessHealthServicer(runtime.health)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{host}:{port}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound
