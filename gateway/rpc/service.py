"""The ``eventgw.v1.EventGateway`` servicer: authentication, rate limits, the stream window and
aborts; the translation of batches is ``rpc.translate``'s.

Authentication is ``authorization: Bearer <key>`` metadata. Each batch is translated into a
``Submission`` and handed to the same pipeline as REST (``Ingestor.submit``); its ``Result`` is
answered as a ``SubmitBatchResponse``. Every request-level error leaves through ``abort``, mapped
by ``errors.GRPC_STATUS``; retryable ones carry a ``google.rpc.RetryInfo`` detail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.access import RequestInfo
from gateway.auth import TRACK_SCOPE, Principal
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MissingCredential,
    MissingScope,
    RateLimited,
    SubmissionNotFound,
    grpc_status_name,
    retry_after,
)
from gateway.model import ApiKey, Result
from gateway.pb.gateway_pb2 import (
    DESCRIPTOR,
    GetSubmissionRequest,
    ResultView,
    SubmitBatchResponse,
)
from gateway.rpc.batch import Batch
from gateway.rpc.translate import ENDPOINT, exceptions, response, translate
from gateway.runtime import Runtime

log = logging.getLogger(__name__)

SERVICE = DESCRIPTOR.services_by_name["EventGateway"].full_name
STREAM_WINDOW = 8  # batches of one stream in flight at once; answers stay in order
Context = grpc.aio.ServicerContext[object, object]


class EventGatewayService:
    """The ``EventGateway`` methods. ``rpc.server`` registers them with its own request parsing
    (each request arrives as a ``Batch``) and hands each call its ``RequestInfo``, hence no
    generated servicer base class."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def SubmitBatch(
        self, request: Batch, context: Context, info: RequestInfo
    ) -> SubmitBatchResponse:
        try:
            principal = await self._authenticate(context, info)
            self._rate_limit(principal)
            return await self._submit(principal, request, info)
        except GatewayError as error:
            await abort(context, error, info)

    async def SubmitStream(
        self, request_iterator: AsyncIterator[Batch], context: Context, info: RequestInfo
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
                    submit = self._submit(principal, request, info)
                    await window.put(asyncio.create_task(submit))
            except Exception as exc:
                await window.put(exc)
            else:
                await window.put(None)

        try:
            reader = asyncio.create_task(read(await self._authenticate(context, info)))
            while (item := await window.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield await item
        except GatewayError as error:
            await abort(context, error, info)
        finally:
            if reader is not None:
                reader.cancel()
            while not window.empty():  # batches behind the one that ended the stream finish
                left = window.get_nowait()  # unanswered; their errors are nobody's to raise
                if isinstance(left, asyncio.Task):
                    left.add_done_callback(_retrieve)

    async def GetSubmission(
        self, request: GetSubmissionRequest, context: Context, info: RequestInfo
    ) -> SubmitBatchResponse:
        try:
            principal = await self._authenticate(context, info)
            if not request.idempotency_key:
                raise InvalidRequest("idempotency_key is required", field="idempotency_key")
            result = await self.runtime.ingestor.lookup(
                principal.project_id, request.idempotency_key, ENDPOINT
            )
            if result is None:
                raise SubmissionNotFound("no completed submission with that key")
        except GatewayError as error:
            await abort(context, error, info)
        return _answer(result, ResultView.RESULT_VIEW_ALL)

    async def _authenticate(self, context: Context, info: RequestInfo) -> Principal:
        metadata = dict(context.invocation_metadata() or ())
        value = str(metadata.get("authorization", ""))
        scheme, _, secret = value.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise MissingCredential("authorization metadata with a Bearer key is required")
        principal = await self.runtime.auth.authenticate(ApiKey(secret.strip()))
        info.project = principal.project_id
        if TRACK_SCOPE not in principal.scopes:
            raise MissingScope(f"API key missing {TRACK_SCOPE} scope", scope=TRACK_SCOPE)
        return principal

    def _rate_limit(self, principal: Principal) -> None:
        """One token of the key's bucket per batch; RESOURCE_EXHAUSTED with RetryInfo if none."""
        self.runtime.limiter.acquire(principal.key_id, principal.rate_limit)

    async def _submit(
        self, principal: Principal, batch: Batch, info: RequestInfo
    ) -> SubmitBatchResponse:
        limit = self.runtime.settings.max_grpc_batch_events
        submission = translate(batch, principal.project_id, max_events=limit)
        result = await self.runtime.ingestor.submit(submission)
        answer = _answer(result, batch.request.result_view)
        self._count(submission.size, answer, info)
        return answer

    def _count(self, events: int, answer: SubmitBatchResponse, info: RequestInfo) -> None:
        """The metrics and access-log counts of one answered batch (a replay counts nothing)."""
        self.runtime.metrics.observe_batch("grpc", info.endpoint, events)
        info.events = (info.events or 0) + events
        if answer.replayed:
            info.replays += 1
        else:
            info.accepted += answer.accepted
            info.duplicates += answer.duplicates
            info.rejected += answer.rejected


def _retrieve(task: asyncio.Task[SubmitBatchResponse]) -> None:
    """Consume the outcome of a batch nobody will be answered about (no "never retrieved")."""
    if not task.cancelled():
        task.exception()


def _answer(result: Result, view: ResultView.ValueType) -> SubmitBatchResponse:
    """The ``Result``'s answer in ``view``; a key stored before results were stored whole kept
    its answer's bytes."""
    if result.rendered is not None:
        answer = SubmitBatchResponse.FromString(result.rendered.body)
        answer.replayed = True
        return exceptions(answer) if view == ResultView.RESULT_VIEW_EXCEPTIONS else answer
    return response(result, view)


async def abort(context: Context, error: GatewayError, info: RequestInfo) -> NoReturn:
    """End the call with ``error``'s status (``errors.GRPC_STATUS``): the one way every gRPC
    method fails. A retryable error carries how long to wait as ``google.rpc.RetryInfo``."""
    info.error, info.rate_limited = error.code, isinstance(error, RateLimited)
    code = grpc.StatusCode[grpc_status_name(error)]
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if (seconds := retry_after(error)) is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(seconds * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    rich = rpc_status.to_status(status)  # carries the details in grpc-status-details-bin
    await context.abort(rich.code, rich.details, rich.trailing_metadata)
