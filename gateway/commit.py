"""Group commit: the writer tasks that turn queued jobs into transactions, and their answers.

A writer task (one on SQLite, several side by side on PostgreSQL) takes whatever jobs are queued
and commits them in one transaction: first the idempotency keys of the jobs that carry a new one
(a job whose key exists already is left out, and answered None: its caller decides it by the
stored key), then one ``INSERT .. ON CONFLICT DO NOTHING`` for all the other jobs' events, then
the keyed jobs' ``Result``s, stored with their keys. Only then is each job answered. Durability
costs one commit per group, keyed or not.

On SQLite, where the writer's thread takes the GIL back after every statement, a group whose keys
are all new (every group but a retry's) is first tried in four statements whatever its size:
``BEGIN``, the events, the keys already completed with their results, ``COMMIT``. A key that
turns out to be stored rolls that back, and the group is committed as above.

On a SQLite file each writer task commits on a ``SqliteWriter`` of its own (a plain ``sqlite3``
connection on a thread of its own): the whole transaction, results included, is one call there.
On PostgreSQL each keeps an ``AsyncConnection`` of the engine's.

An event whose (project, id) is already stored, or appears earlier in the same group, is a
duplicate; the database decides, so this holds across processes. A job's ``Result`` is built from
the few rows that were not new: no per-event object on the common path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import cast

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import GatewayError, Overloaded, StorageUnavailable
from gateway.model import Outcome, Result
from gateway.storage.engine import engine_sqlite_pragmas, sqlite_file
from gateway.storage.events import EventStore, NewKeys, Row, commit_rows, insert_pages, transaction
from gateway.storage.idempotency import Claim, IdempotencyStore, NewKey
from gateway.storage.writer import SqliteWriter

log = logging.getLogger(__name__)

_KEY = itemgetter(0, 1)  # a row's (project id, event id)


@dataclass(eq=False, kw_only=True, slots=True)
class Job:
    """One submission's rows and how to answer it. ``positions[i]`` is row ``i``'s index in the
    request (None: the rows are the request's items, in order); ``size`` items in all. ``claim``:
    the idempotency key its ``Result`` is stored under (a ``NewKey`` is inserted first)."""

    rows: list[Row]
    size: int
    positions: list[int] | None = None
    rejected: Mapping[int, Outcome] = field(default_factory=dict)
    error: GatewayError | None = None
    claim: Claim | None = None
    future: asyncio.Future[Result | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def result(
        self, new: set[tuple[str, str]] | None, first: dict[tuple[str, str], Row] | None
    ) -> Result:
        """The job's ``Result``, given the keys its group stored (``new``, None: all of them) and
        each key's first row in the group (``first``, None: no key repeated)."""
        rows = self.rows
        if self.error is not None:
            return Result([""] * self.size, error=self.error)
        duplicates: frozenset[int] = frozenset()
        if new is not None or first is not None:
            duplicates = frozenset(
                i
                for i, row in enumerate(rows)
                if (first is not None and first[_KEY(row)] is not row)
                or (new is not None and _KEY(row) not in new)
            )
        positions = self.positions
        if positions is None:
            return Result([row[1] for row in rows], duplicates=duplicates)
        ids = [""] * self.size
        for position, row in zip(positions, rows, strict=True):
            ids[position] = row[1]
        for index, outcome in self.rejected.items():
            ids[index] = outcome.event_id
        return Result(
            ids,
            duplicates=frozenset(positions[i] for i in duplicates),
            rejected=self.rejected,
        )


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
class _Connection:
    """One writer task's own connection, kept between groups: SQLite's page cache is per
    connection (a pooled one, rotating, would start cold each time) and PostgreSQL's prepared
    statements too. Dropped after a failed group, reopened by the next. On a SQLite file it is
    ``sqlite``'s (which reopens its own), else ``conn``."""

    conn: AsyncConnection | None = None
    sqlite: SqliteWriter | None = None


class GroupCommitter:
    """The bounded job queue and the writer tasks that drain it."""

    def __init__(
        self,
        events: EventStore,
        idempotency: IdempotencyStore,
        limits: WriterLimits,
        on_commit: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.events = events
        self.idempotency = idempotency
        self.limits = limits
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._queued = 0
        self._changed = asyncio.Condition()
        self._writers: list[asyncio.Task[None]] = []
        self._on_commit = on_commit
        self._sqlite_file = sqlite_file(events.engine)
        self._sqlite_writers: list[SqliteWriter] = []
        # Group commits failed in a row (0 after a success), and when the last one failed
        # (``time.monotonic()``): readiness reads them.
        self.failures = 0
        self.failed_at = 0.0

    @property
    def queued_events(self) -> int:
        return self._queued

    @property
    def sqlite_writers(self) -> tuple[SqliteWriter, ...]:
        """The writer tasks' own SQLite connections (on a SQLite file), opened by their first
        group."""
        return tuple(self._sqlite_writers)

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

    async def commit(self, job: Job) -> Result | None:
        """Queue ``job`` (waiting while the queue is full; ``Overloaded`` past ``queue_wait_s``)
        and answer its ``Result`` once committed (None: its ``NewKey`` existed, nothing of it was
        stored)."""
        if not self._writers:
            raise StorageUnavailable("The gateway is shutting down", retry_after=1)
        n, bound = len(job.rows), self.limits.queue_max_events
        async with self._changed:
            if self._queued and self._queued + n > bound:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._queued + n <= bound),
                        self.limits.queue_wait_s,
                    )
                except TimeoutError:
                    raise Overloaded("The gateway is overloaded", retry_after=1) from None
            self._queued += n
        self._queue.put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        writer = _Connection()
        try:
            await self._serve(writer)
        finally:
            if writer.conn is not None:
                await writer.conn.close()
            if writer.sqlite is not None:
                await writer.sqlite.close()

    async def _serve(self, writer: _Connection) -> None:
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
            committed = await self._commit(writer, group)
            if committed:
                self.failures = 0
            else:
                self.failures, self.failed_at = self.failures + 1, time.monotonic()
            async with self._changed:
                self._queued -= n
                self._changed.notify_all()
            # The metrics hook, once per group (the queue already shrunk by this group); it must
            # never stop the writer.
            if committed and self._on_commit is not None:
                try:
                    self._on_commit(len(group), n, time.perf_counter() - started)
                except Exception:
                    log.exception("the on_commit hook failed")

    async def _commit(self, writer: _Connection, group: list[Job]) -> bool:
        """Commit ``group`` on ``writer``'s connection and answer its jobs; False when the
        transaction failed."""
        rows: list[Row] = list(chain.from_iterable(job.rows for job in group))
        try:
            if self._sqlite_file is not None:
                if writer.sqlite is None:
                    pragmas = await engine_sqlite_pragmas(self.events.engine)
                    writer.sqlite = SqliteWriter(self._sqlite_file, pragmas)
                    self._sqlite_writers.append(writer.sqlite)
                results = await writer.sqlite.run(self._transaction(group, rows))
            else:
                if writer.conn is None:
                    writer.conn = await self.events.engine.connect()
                results = await self._commit_on(writer.conn, group, rows)
        except Exception as exc:
            log.exception("group commit of %d events failed", len(rows))
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
            if not job.future.done():
                job.future.set_result(result)
        return True

    def _transaction(
        self, group: list[Job], rows: list[Row]
    ) -> Callable[[sqlite3.Connection], list[Result | None]]:
        """The group's transaction on the SQLite writer's thread. SQLite decides the duplicates
        inside the group too (it inserts in order: a key's first row is stored, a later one
        conflicts), so keys are compared here only when some row was not stored."""
        store = self.idempotency

        def run(db: sqlite3.Connection) -> list[Result | None]:
            claims = [job.claim for job in group if job.claim is not None]
            if not claims:
                # Nothing to store with the events: a single statement, when one page.
                new = commit_rows(db, rows)
                first = None if new is None else _first_rows(rows)
                return [job.result(new, first) for job in group]
            if all(isinstance(claim, NewKey) for claim in claims):
                # Every key new, as it is but for retries: the events, then the keys with their
                # results, one statement each; a key found stored undoes it all, and the
                # transaction below, a statement per key, tells which.
                with contextlib.suppress(_KeyExists), transaction(db):
                    new = insert_pages(db, rows)
                    first = None if new is None else _first_rows(rows)
                    answers, completions = _settled(group, group, new, first)
                    fresh = cast("list[tuple[NewKey, bytes]]", completions)  # every claim new
                    if not store.insert_completed_sqlite(db, fresh):
                        raise _KeyExists
                    return answers
            with transaction(db):
                kept = [
                    job
                    for job in group
                    if not isinstance(job.claim, NewKey) or store.insert_new_sqlite(db, job.claim)
                ]
                stored = rows if len(kept) == len(group) else _rows_of(kept)
                new = insert_pages(db, stored)
                first = None if new is None else _first_rows(stored)
                answers, completions = _settled(group, kept, new, first)
                for claim, result in completions:
                    store.complete_sqlite(db, claim, result)
            return answers

        return run

    async def _commit_on(
        self, conn: AsyncConnection, group: list[Job], rows: list[Row]
    ) -> list[Result | None]:
        store = self.idempotency
        async with conn.begin():
            # Keys in one order, as the events are: two groups never wait for each other's.
            keyed = sorted(
                (job.claim for job in group if isinstance(job.claim, NewKey)),
                key=lambda claim: (claim.project_id, claim.key),
            )
            inserted = await store.insert_new(conn, keyed) if keyed else set()
            taken = {id(claim) for claim in keyed if claim.token not in inserted}
            kept = [job for job in group if id(job.claim) not in taken]
            stored = rows if not taken else _rows_of(kept)
            first = _first_rows(stored)
            unique = stored if first is None else list(first.values())
            new = await self.events.insert_rows(conn, unique)
            answers, completions = _settled(group, kept, new, first)
            if completions:
                await store.complete(conn, completions)
        return answers


class _KeyExists(Exception):
    """A group's transaction met a stored key: rolled back, to be stored a key at a time."""


def _settled(
    group: list[Job], kept: list[Job], new: NewKeys, first: dict[tuple[str, str], Row] | None
) -> tuple[list[Result | None], list[tuple[Claim, bytes]]]:
    """Each job's answer (None: left out, ``kept`` were stored), and the encoded ``Result`` to
    store under each kept job's claim."""
    answers: dict[int, Result] = {}
    completions = []
    for job in kept:
        result = answers[id(job)] = job.result(new, first)
        if job.claim is not None:
            completions.append((job.claim, result.encode()))
    return [answers.get(id(job)) for job in group], completions


def _rows_of(jobs: Sequence[Job]) -> list[Row]:
    return list(chain.from_iterable(job.rows for job in jobs))


def _first_rows(rows: Sequence[Row]) -> dict[tuple[str, str], Row] | None:
    """Each key's first row, when some key repeats (rare: the first occurrence wins); else None."""
    if len(set(map(_KEY, rows))) == len(rows):
        return None
    first: dict[tuple[str, str], Row] = {}
    for row in rows:
        first.setdefault(_KEY(row), row)
    return first
