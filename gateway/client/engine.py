"""The sending half of both clients, on one asyncio loop: a batcher that forms batches by size
and age, and ``max_in_flight`` senders that deliver each batch until it is answered for good.

A batch keeps its idempotency key and its bytes across attempts, so a retry after a lost answer
is a replay of the stored answer, not a second write. Unary senders each deliver one batch at a
time; stream senders keep up to ``stream_window`` batches in flight on one ``SubmitStream`` and,
when the stream breaks, send the unanswered ones again on the next.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

import grpc

from gateway.client.buffer import Batch, Buffer, Counters, Rejection
from gateway.client.options import Options, open_channel
from gateway.client.retry import Failure, classify
from gateway.pb.gateway_pb2 import EventStatus, SubmitBatchResponse

log = logging.getLogger("eventgw.client")

SERVICE = "/eventgw.v1.EventGateway/"
_REJECTED = EventStatus.EVENT_STATUS_REJECTED
# A stream refused for these refuses every batch on it; other request errors name one batch.
_WHOLE_STREAM = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


class Engine:
    def __init__(self, target: str, api_key: str, options: Options) -> None:
        self.target, self.options = target, options
        self.metadata = (("authorization", f"Bearer {api_key}"),)
        self.counters = Counters()
        self.buffer = Buffer(
            capacity=options.max_buffered,
            policy=options.policy,
            batch_size=options.batch_size,
            max_batch_bytes=options.max_batch_bytes,
            on_batch_ready=self._wake,
            counters=self.counters,
            key_factory=options.key_factory,
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle (on the loop) ---------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.channel = open_channel(self.target, self.options)
        self._ready = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever held events are answered
        self._room = asyncio.Event()
        self._queue: asyncio.Queue[Batch] = asyncio.Queue()
        sender = self._unary_sender if self.options.transport == "unary" else self._stream_sender
        self._tasks = [asyncio.create_task(self._batcher())]
        self._tasks += [asyncio.create_task(sender()) for _ in range(self.options.max_in_flight)]

    def _wake(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._ready.set)

    async def flush(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Send everything held now; True once every held event is answered, False when
        ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for batch in self.buffer.take(force=True, max_age=self.options.max_age):
                self._queue.put_nowait(batch)
            if self.buffer.held == 0:
                return True
            wait = self.options.max_age
            if deadline is not None:
                if (left := deadline - time.monotonic()) <= 0:
                    return False
                wait = min(wait, left)
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), wait)

    async def close(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Flush (up to ``timeout``), stop, and count what is still held as abandoned."""
        flushed = await self.flush(timeout)
        self.buffer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with self.buffer.lock:
            self.counters.abandoned += self.buffer.held
            self.buffer.held, self.buffer.pending = 0, []
        await self.channel.close(None)
        return flushed

    async def wait_for_room(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.buffer.room():
            self._room.clear()
            wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if wait <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), wait)
        return True

    # -- batching --------------------------------------------------------------------------------

    async def _batcher(self) -> None:
        max_age = self.options.max_age
        while True:
            wait = max_age
            if self.buffer.pending:
                wait = max(0.0, self.buffer.oldest + max_age - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait)
            self._ready.clear()
            for batch in self.buffer.take(force=False, max_age=max_age):
                self._queue.put_nowait(batch)

    # -- outcomes --------------------------------------------------------------------------------

    def _attempt(self, batch: Batch) -> None:
        batch.attempts += 1
        if batch.attempts == 1:
            self.counters.sent += len(batch.events)
        else:
            self.counters.retried += len(batch.events)

    def _may_retry(self, batch: Batch, failure: Failure) -> bool:
        limit = self.options.max_attempts
        return failure.retried and (limit is None or batch.attempts < limit)

    def _answered(self, batch: Batch, answer: SubmitBatchResponse) -> None:
        c = self.counters
        c.batches += 1
        c.replayed_batches += answer.replayed
        c.accepted += answer.accepted
        c.duplicates += answer.duplicates
        c.rejected += answer.rejected
        if answer.rejected:
            self._report(
                [
                    Rejection(
                        r.event_id, r.code, r.message, r.field, r.index, batch.events[r.index]
                    )
                    for r in answer.results
                    if r.status == _REJECTED
                ]
            )
        self._settle(len(batch.events))

    def _refused(self, batch: Batch, failure: Failure) -> None:
        """The whole batch is refused for good: each event is reported with the status."""
        from gateway.client.events import decode

        self.counters.rejected += len(batch.events)
        self.counters.batches += 1
        code = failure.code.name
        self._report(
            [
                Rejection(decode(e).id, code, failure.message, "", i, e)
                for i, e in enumerate(batch.events)
            ]
        )
        self._settle(len(batch.events))

    def _report(self, rejections: list[Rejection]) -> None:
        if self.options.on_rejected is None:
            return
        try:
            self.options.on_rejected(rejections)
        except Exception:
            log.exception("the on_rejected callback failed")

    def _settle(self, n: int) -> None:
        self.buffer.release(n)
        self._progress.set()
        self._room.set()

    # -- transports ------------------------------------------------------------------------------

    async def _unary_sender(self) -> None:
        call = self.channel.unary_unary(SERVICE + "SubmitBatch", None, None)
        while True:
            batch = await self._queue.get()
            while True:
                self._attempt(batch)
                try:
                    raw = await call(
                        batch.request, metadata=self.metadata, timeout=self.options.timeout
                    )
                except grpc.aio.AioRpcError as error:
                    failure = classify(error)
                    if not self._may_retry(batch, failure):
                        self._refused(batch, failure)
                        break
                    await asyncio.sleep(
                        self.options.backoff.delay(batch.attempts, failure.wait_hint)
                    )
                    continue
                self._answered(batch, SubmitBatchResponse.FromString(raw))
                break

    async def _stream_sender(self) -> None:
        backlog: collections.deque[Batch] = collections.deque()  # unanswered on a broken stream
        failures = 0
        while True:
            open_stream = self.channel.stream_stream(SERVICE + "SubmitStream", None, None)
            call = open_stream(metadata=self.metadata)  # type: ignore[call-arg]
            in_flight: collections.deque[Batch] = collections.deque()
            slots = asyncio.Semaphore(self.options.stream_window)

            async def writer(
                call: Any = call,
                in_flight: collections.deque[Batch] = in_flight,
                slots: asyncio.Semaphore = slots,
            ) -> None:
                while True:
                    await slots.acquire()
                    batch = backlog.popleft() if backlog else await self._queue.get()
                    in_flight.append(batch)  # from here on it is sent again if unanswered
                    self._attempt(batch)
                    await call.write(batch.request)

            writing = asyncio.create_task(writer())
            failure: Failure | None = None
            try:
                async for raw in call:
                    slots.release()
                    failures = 0
                    self._answered(in_flight.popleft(), SubmitBatchResponse.FromString(raw))
            except grpc.aio.AioRpcError as error:
                failure = classify(error)
            finally:
                writing.cancel()
                with contextlib.suppress(BaseException):
                    await writing
                call.cancel()
            if failure is None:  # the gateway ended the stream: as if it went away
                failure = Failure(grpc.StatusCode.UNAVAILABLE, "stream ended", None, True)
            failures += 1
            kept = []
            for i, batch in enumerate(in_flight):
                if failure.retried:
                    keep = self._may_retry(batch, failure)
                else:  # the first unanswered batch was refused, or the whole stream was
                    keep = i > 0 and failure.code not in _WHOLE_STREAM
                if keep:
                    kept.append(batch)
                else:
                    self._refused(batch, failure)
            backlog.extendleft(reversed(kept))
            if failure.retried:
                await asyncio.sleep(self.options.backoff.delay(failures, failure.wait_hint))
