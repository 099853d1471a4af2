"""The one ingestion path shared by REST and gRPC: idempotency, event dedup and group commit.

Callers have already authenticated the request and translated it into canonical events.
``Ingestor.ingest`` then

1. claims the request's idempotency key, if any (a completed key returns the stored response);
2. queues the events for the writers, waiting in a bounded queue (``Overloaded`` past its bound);
3. a writer task (one on SQLite, several side by side on PostgreSQL) coalesces whatever is
   queued into one transaction (group commit): one ``INSERT .. ON CONFLICT DO NOTHING`` for all
   events, the stored responses of keyed requests, one commit; only then are the requests
   answered. Durability costs one commit per group.

An event whose (project, id) is already stored, or appears earlier in the same group, is a
``DUPLICATE``; the database decides, so this holds across processes.

This is the hot path of every event, so per event it does no more than it must: each event is
serialized once into a plain-tuple outbox row (``Ingestor.rows``; the gRPC front builds its rows
itself, ``ingest_rows``), each writer keeps its connection (warm caches), a group without stored
responses is inserted and committed in one call to the database driver, and the per-event
answers (``Outcomes``) are a list of ids plus the few indexes that were duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import overload

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.base import Outcome, Status
from gateway.errors import GatewayError, Overloaded, StorageUnavailable
from gateway.pb.event_pb2 import Event, EventType
from gateway.storage.engine import storage_errors
from gateway.storage.events import EventStore, Row
from gateway.storage.idempotency import Claim, IdempotencyStore, StoredResponse

log = logging.getLogger(__name__)

Render = Callable[[Sequence[Outcome]], StoredResponse]
# "EVENT_TYPE_PAGE_VIEW" -> "page_view": the outbox column and the relay's subject token.
TYPE_NAMES = {v: n.removeprefix("EVENT_TYPE_").lower() for n, v in EventType.items()}
_KEY = itemgetter(0, 1)  # a row's (project id, event id)


class Outcomes(Sequence[Outcome]):
    """The outcomes of one request's events, by index: each accepted unless it is among
    ``duplicates``. Nothing is built per event until an ``Outcome`` is read: the gRPC front reads
    ``duplicates`` directly."""

    __slots__ = ("duplicates", "event_ids")

    def __init__(self, event_ids: Sequence[str], duplicates: frozenset[int] = frozenset()) -> None:
        self.event_ids = event_ids
        self.duplicates = duplicates

    @property
    def accepted(self) -> int:
        return len(self.event_ids) - len(self.duplicates)

    def __len__(self) -> int:
        return len(self.event_ids)

    def _outcome(self, index: int) -> Outcome:
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


@dataclass(frozen=True, kw_only=True)
class IdempotencyRequest:
    key: str
    endpoint: str  # "POST /batch", "grpc SubmitBatch"
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class Ingested:
    """The result of one request: per-event outcomes (None when replayed) and, when the request
    carried an idempotency key, the stored response (to send as is)."""

    outcomes: Outcomes | None
    response: StoredResponse | None
    replayed: bool = False


@dataclass(eq=False, kw_only=True, slots=True)
class _Job:
    rows: list[Row]
    claim: Claim | None
    render: Render | None
    future: asyncio.Future[tuple[Outcomes, StoredResponse | None]]


@dataclass(kw_only=True)
class WriterLimits:
    max_events: int = 10_000
    max_delay_s: float = 0.0
    queue_max_events: int = 200_000
    queue_wait_s: float = 2.0
    # Group commits in flight at once, each on its own connection. SQLite has one writer at a
    # time, so more would only queue on its lock; PostgreSQL commits them side by side.
    writers: int = 1


@dataclass(eq=False)
class _Writer:
    """One writer task's own connection, kept between groups: SQLite's page cache is per
    connection (a pooled one, rotating, would start cold each time) and PostgreSQL's prepared
    statements too. Dropped after a failed group, reopened by the next."""

    conn: AsyncConnection | None = None


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
        self._writers: list[asyncio.Task[None]] = []
        self._on_commit = on_commit

    @property
    def queued_events(self) -> int:
        return self._state.events

    async def start(self) -> None:
        self._writers = [
            asyncio.create_task(self._run(), name=f"eventgw-writer-{number}")
            for number in range(max(1, self.limits.writers))
        ]

    async def stop(self) -> None:
        """Finish every queued job, then stop the writers (one stop mark each, behind them)."""
        writers, self._writers = self._writers, []
        for _ in writers:
            self._queue.put_nowait(None)
        await asyncio.gather(*writers)

    async def ingest(
        self,
        project_id: str,
        events: Sequence[Event],
        *,
        idempotency: IdempotencyRequest | None = None,
        render: Render | None = None,
    ) -> Ingested:
        """Store ``events`` of ``project_id`` (their ``project_id`` is set here)."""
        return await self.ingest_rows(
            project_id, self.rows(project_id, events), idempotency=idempotency, render=render
        )

    async def ingest_rows(
        self,
        project_id: str,
        rows: list[Row],
        *,
        idempotency: IdempotencyRequest | None = None,
        render: Render | None = None,
    ) -> Ingested:
        """``ingest`` for a front that built the outbox rows itself (``Ingestor.rows``' shape)."""
        claim = None
        if idempotency is not None:
            decided = await self._claim(project_id, idempotency)
            if not isinstance(decided, Claim):
                return Ingested(outcomes=None, response=decided, replayed=True)
            claim = decided
        try:
            outcomes, response = await self._submit(rows, claim, render if claim else None)
        except GatewayError as exc:
            if claim is not None and exc.retryable:
                with contextlib.suppress(Exception):
                    await self.idempotency.release(claim)
            raise
        return Ingested(outcomes=outcomes, response=response)

    async def _claim(self, project_id: str, request: IdempotencyRequest) -> Claim | StoredResponse:
        with storage_errors("idempotency claim"):
            decided = await self.idempotency.claim(
                project_id, request.key, endpoint=request.endpoint, fingerprint=request.fingerprint
            )
        return decided if isinstance(decided, Claim) else decided.response

    @staticmethod
    def rows(project_id: str, events: Sequence[Event]) -> list[Row]:
        """The outbox rows of ``events``, each serialized once, with ``project_id`` set."""
        names = TYPE_NAMES
        rows: list[Row] = []
        append = rows.append
        for event in events:
            event.project_id = project_id
            received = event.received_at
            append(
                (
                    project_id,
                    event.id,
                    event.dialect,
                    names.get(event.type, "unspecified"),
                    received.seconds * 1_000_000 + received.nanos // 1000,
                    event.SerializeToString(),
                )
            )
        return rows

    async def _submit(
        self, rows: list[Row], claim: Claim | None, render: Render | None
    ) -> tuple[Outcomes, StoredResponse | None]:
        if not self._writers:
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
        future: asyncio.Future[tuple[Outcomes, StoredResponse | None]]
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(rows=rows, claim=claim, render=render, future=future))
        return await future

    async def _run(self) -> None:
        writer = _Writer()
        try:
            await self._serve(writer)
        finally:
            if writer.conn is not None:
                await writer.conn.close()

    async def _serve(self, writer: _Writer) -> None:
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
            started = time.perf_counter()
            committed = await self._commit(writer, group, n)
            async with self._state.changed:
                self._state.events -= n
                self._state.changed.notify_all()
            # The metrics hook, once per group (the queue already shrunk by this group); it must
            # never stop the writer.
            if committed and self._on_commit is not None:
                try:
                    self._on_commit(len(group), n, time.perf_counter() - started)
                except Exception:
                    log.exception("the on_commit hook failed")

    @staticmethod
    def _duplicates(
        rows: list[Row], new: set[tuple[str, str]] | None, first: dict[tuple[str, str], Row] | None
    ) -> frozenset[int]:
        """Indexes of ``rows`` this group did not store: already in the database (not in
        ``new``), or not the first occurrence of their key in the group (``first``)."""
        return frozenset(
            i
            for i, row in enumerate(rows)
            if (first is not None and first[_KEY(row)] is not row)
            or (new is not None and _KEY(row) not in new)
        )

    @staticmethod
    def _outcomes(
        job: _Job, new: set[tuple[str, str]] | None, first: dict[tuple[str, str], Row] | None
    ) -> Outcomes:
        ids = [row[1] for row in job.rows]
        if new is None and first is None:
            return Outcomes(ids)
        return Outcomes(ids, Ingestor._duplicates(job.rows, new, first))

    async def _write(
        self,
        conn: AsyncConnection,
        group: list[_Job],
        unique: list[Row],
        first: dict[tuple[str, str], Row] | None,
        results: list[tuple[Outcomes, StoredResponse | None] | BaseException],
    ) -> None:
        """The group's events and its keyed requests' stored responses, in ``conn``'s open
        transaction."""
        new = await self.events.insert_rows(conn, unique)
        for job in group:
            outcomes = self._outcomes(job, new, first)
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

    async def _commit(self, writer: _Writer, group: list[_Job], n: int) -> bool:
        """Commit ``group`` on ``writer``'s connection and answer its requests; False when the
        transaction failed."""
        rows: list[Row] = list(chain.from_iterable(job.rows for job in group))
        results: list[tuple[Outcomes, StoredResponse | None] | BaseException] = []
        try:
            if writer.conn is None:
                writer.conn = await self.events.engine.connect()
            conn = writer.conn
            if self.events.commits_in_one_call and all(job.claim is None for job in group):
                # No stored response to write with the events: insert and commit in one call.
                # The database also decides the duplicates inside the group (it inserts in
                # order: a key's first row is stored, a later one conflicts), so keys are
                # compared here only when some row was not stored.
                new = await self.events.insert_committed(conn, rows)
                first = None if new is None else _first_rows(rows)
                results.extend((self._outcomes(job, new, first), None) for job in group)
            else:
                first = _first_rows(rows)
                unique = rows if first is None else list(first.values())
                async with conn.begin():
                    await self._write(conn, group, unique, first, results)
        except Exception as exc:
            log.exception("group commit of %d events failed", n)
            if writer.conn is not None:
                with contextlib.suppress(Exception):
                    await writer.conn.invalidate()
                writer.conn = None
            error = StorageUnavailable("Storage is unavailable", retry_after=1)
            error.__cause__ = exc
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error)
            return False
        for job, result in zip(group, results, strict=True):
            if job.future.done():
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        return True


def _first_rows(rows: list[Row]) -> dict[tuple[str, str], Row] | None:
    """Each key's first row, when some key repeats (rare: the first occurrence wins); else None."""
    if len(set(map(_KEY, rows))) == len(rows):
        return None
    first: dict[tuple[str, str], Row] = {}
    for row in rows:
        first.setdefault(_KEY(row), row)
    return first
