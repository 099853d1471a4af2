"""The one ingestion path shared by REST and gRPC: idempotency, event dedup and group commit.

Callers have already authenticated the request and translated it into canonical events.
``Ingestor.ingest`` then

1. claims the request's idempotency key, if any (a completed key returns the stored response);
2. queues the events for the writer, waiting in a bounded queue (``Overloaded`` past its bound);
3. the writer task coalesces whatever is queued into one transaction (group commit): one
   ``INSERT .. ON CONFLICT DO NOTHING`` for all events, the stored responses of keyed requests,
   one commit; only then are the requests answered. Durability costs one commit per group.

An event whose (project, id) is already stored, or appears earlier in the same group, is a
``DUPLICATE``; the database decides, so this holds across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adapters.base import Outcome, Status
from gateway.errors import GatewayError, Overloaded, StorageUnavailable
from gateway.pb.event_pb2 import Event, EventType
from gateway.storage.events import EventRow, EventStore
from gateway.storage.idempotency import Claim, IdempotencyStore, StoredResponse

log = logging.getLogger(__name__)

Render = Callable[[Sequence[Outcome]], StoredResponse]
# "EVENT_TYPE_PAGE_VIEW" -> "page_view": the outbox column and the relay's subject token.
TYPE_NAMES = {v: n.removeprefix("EVENT_TYPE_").lower() for n, v in EventType.items()}


@dataclass(frozen=True, kw_only=True)
class IdempotencyRequest:
    key: str
    endpoint: str  # "POST /batch", "grpc SubmitBatch"
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class Ingested:
    """The result of one request: per-event outcomes (None when replayed) and, when the request
    carried an idempotency key, the stored response (to send as is)."""

    outcomes: list[Outcome] | None
    response: StoredResponse | None
    replayed: bool = False


@dataclass(eq=False, kw_only=True)
class _Job:
    rows: list[EventRow]
    claim: Claim | None
    render: Render | None
    future: asyncio.Future[tuple[list[Outcome], StoredResponse | None]]


@dataclass(kw_only=True)
class WriterLimits:
    max_events: int = 10_000
    max_delay_s: float = 0.0
    queue_max_events: int = 200_000
    queue_wait_s: float = 2.0


@dataclass(kw_only=True)
class _QueueState:
    events: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class Ingestor:
    def __init__(
        self,
        events: EventStore,
        idempotency: IdempotencyStore,
        limits: WriterLimits | None = None,
        on_commit: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.events = events
        self.idempotency = idempotency
        self.limits = limits or WriterLimits()
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._state = _QueueState()
        self._writer: asyncio.Task[None] | None = None
        self._on_commit = on_commit

    @property
    def queued_events(self) -> int:
        return self._state.events

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._run(), name="eventgw-writer")

    async def stop(self) -> None:
        """Finish every queued job, then stop the writer."""
        if self._writer is not None:
            self._queue.put_nowait(None)
            await self._writer
            self._writer = None

    async def ingest(
        self,
        project_id: str,
        events: Sequence[Event],
        *,
        idempotency: IdempotencyRequest | None = None,
        render: Render | None = None,
    ) -> Ingested:
        claim = None
        if idempotency is not None:
            decided = await self._claim(project_id, idempotency)
            if not isinstance(decided, Claim):
                return Ingested(outcomes=None, response=decided, replayed=True)
            claim = decided
        try:
            outcomes, response = await self._submit(
                self._rows(project_id, events), claim, render if claim else None
            )
        except GatewayError as exc:
            if claim is not None and exc.retryable:
                with contextlib.suppress(Exception):
                    await self.idempotency.release(claim)
            raise
        return Ingested(outcomes=outcomes, response=response)

    async def _claim(self, project_id: str, request: IdempotencyRequest) -> Claim | StoredResponse:
        try:
            decided = await self.idempotency.claim(
                project_id, request.key, endpoint=request.endpoint, fingerprint=request.fingerprint
            )
        except GatewayError:
            raise
        except Exception as exc:
            log.exception("idempotency claim failed")
            raise StorageUnavailable("Storage is unavailable", retry_after=1) from exc
        return decided if isinstance(decided, Claim) else decided.response

    @staticmethod
    def _rows(project_id: str, events: Sequence[Event]) -> list[EventRow]:
        rows = []
        for event in events:
            event.project_id = project_id
            rows.append(
                EventRow(
                    project_id=project_id,
                    event_id=event.id,
                    dialect=event.dialect,
                    event_type=TYPE_NAMES.get(event.type, "unspecified"),
                    received_at=event.received_at.ToMicroseconds(),
                    payload=event.SerializeToString(),
                )
            )
        return rows

    async def _submit(
        self, rows: list[EventRow], claim: Claim | None, render: Render | None
    ) -> tuple[list[Outcome], StoredResponse | None]:
        if self._writer is None:
            raise StorageUnavailable("The gateway is shutting down", retry_after=1)
        state, n = self._state, len(rows)
        async with state.changed:
            if state.events and state.events + n > self.limits.queue_max_events:
                try:
                    await asyncio.wait_for(
                        state.changed.wait_for(
                            lambda: state.events + n <= self.limits.queue_max_events
                        ),
                        self.limits.queue_wait_s,
                    )
                except TimeoutError:
                    raise Overloaded("The gateway is overloaded", retry_after=1) from None
            state.events += n
        future: asyncio.Future[tuple[list[Outcome], StoredResponse | None]]
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(rows=rows, claim=claim, render=render, future=future))
        return await future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            job = await self._queue.get()
            if job is None:
                break
            group, n = [job], len(job.rows)
            if self.limits.max_delay_s > 0 and n < self.limits.max_events:
                await asyncio.sleep(self.limits.max_delay_s)
            while n < self.limits.max_events and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
                n += len(nxt.rows)
            await self._commit(group, n)
            async with self._state.changed:
                self._state.events -= n
                self._state.changed.notify_all()

    async def _commit(self, group: list[_Job], n: int) -> None:
        started = time.perf_counter()
        first: dict[tuple[str, str], tuple[int, int]] = {}
        unique: list[EventRow] = []
        for j, job in enumerate(group):
            for i, row in enumerate(job.rows):
                key = (row.project_id, row.event_id)
                if key not in first:
                    first[key] = (j, i)
                    unique.append(row)
        results: list[tuple[list[Outcome], StoredResponse | None] | BaseException] = []
        try:
            async with self.events.engine.begin() as conn:
                inserted = await self.events.insert(conn, unique)
                for j, job in enumerate(group):
                    outcomes = [
                        Outcome(
                            status=Status.ACCEPTED
                            if (key := (row.project_id, row.event_id)) in inserted
                            and first[key] == (j, i)
                            else Status.DUPLICATE,
                            event_id=row.event_id,
                        )
                        for i, row in enumerate(job.rows)
                    ]
                    response = None
                    if job.claim is not None and job.render is not None:
                        try:
                            response = job.render(outcomes)
                        except Exception as exc:  # an adapter bug: fail this request only
                            log.exception("rendering a stored response failed")
                            results.append(exc)
                            continue
                        await self.idempotency.complete(conn, job.claim, response)
                    results.append((outcomes, response))
        except Exception as exc:
            log.exception("group commit of %d events failed", n)
            error = StorageUnavailable("Storage is unavailable", retry_after=1)
            error.__cause__ = exc
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job, result in zip(group, results, strict=True):
            if job.future.done():
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        if self._on_commit is not None:
            self._on_commit(len(group), n, time.perf_counter() - started)
