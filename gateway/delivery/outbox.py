"""Delivery of the outbox to NATS JetStream: committed, undelivered events from the ``events``
table become stream messages, exactly once in the stream, in commit order (``Relay``); and the
outbox's backlog (``outbox_lag``). ``gateway.delivery.process`` runs this as the ``eventgw relay``
process.

One step claims a batch of undelivered rows in ``seq`` order, publishes each stored payload (the
serialized canonical ``Event``) to ``<prefix>.<project id>.<event type>`` with header
``Nats-Msg-Id: <project id>:<event id>``, publishes the whole batch at once and awaits the
broker's acks, then sets ``delivered_at`` on the acknowledged rows. Nothing is marked delivered
before its ack, so a crash or a broker outage loses nothing: the rows stay undelivered and are
published again, and the stream's duplicate window (``DUPLICATE_WINDOW_SECONDS``) drops a copy of
a message it already stored (a crash between the ack and the commit). The events of a batch that
were not acked are published again after the acked ones, so only a failure reorders the stream.
Up to ``PIPELINE_DEPTH`` steps run at once: each claims and sends under one lock (claim order is
stream order), then awaits its acks and marks while the next batch goes out.

On PostgreSQL the claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` and the publish and the update
happen inside the transaction that holds the row locks: several relays (processes, machines) share
the outbox, each batch goes to exactly one of them, and a relay that dies releases its rows with
its connection. Order then holds per relay, not across relays. SQLite has one writer and no row
locks: run one relay per SQLite file (a second one would publish the same rows; the broker would
drop the copies). There the claim is a plain read and the update a short write transaction of its
own, so the relay never holds SQLite's write lock while it waits for the broker; a claim starts
past the batches in flight (``_after``), as nothing locks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.delivery.jetstream import (
    ACKED,
    DUPLICATE,
    FAILED,
    NO_STREAM,
    STREAM_NOT_FOUND,
    Batch,
    NatsError,
    Publisher,
)
from gateway.storage.engine import is_sqlite, now_us
from gateway.storage.schema import events

log = logging.getLogger(__name__)

ACK_TIMEOUT_SECONDS = 5.0
# How long the broker remembers a Nats-Msg-Id (the stream's setting when the relay creates it).
DUPLICATE_WINDOW_SECONDS = 120.0
ONCE_MAX_FAILURES = 5
PIPELINE_DEPTH = 3  # batches in flight at once: claimed and sent while earlier ones await acks
PROGRESS_SECONDS = 2.0
REPORT_SECONDS = 30.0
_NOT_IN_TOKEN = re.compile(r"[\s.*>]")  # a NATS subject token holds none of these
_MARK = update(events).where(events.c.seq == bindparam("s")).values(delivered_at=bindparam("t"))
# SQLite has one writer and gives each new row max(seq) + 1, so rows commit in seq order and no
# undelivered row can lie between two claimed ones: a fully acked batch is one range.
_MARK_RANGE = (
    update(events)
    .where(events.c.seq.between(bindparam("lo"), bindparam("hi")), events.c.delivered_at.is_(None))
    .values(delivered_at=bindparam("t"))
)
# PostgreSQL: other relays hold rows between ours (SKIP LOCKED), so exactly ours, as one array.
_MARK_ANY = (
    update(events)
    .where(events.c.seq == any_(bindparam("seqs", type_=ARRAY(BigInteger))))
    .values(delivered_at=bindparam("t"))
)


def subject_token(value: str) -> str:
    return _NOT_IN_TOKEN.sub("_", value) or "_"


@dataclass(frozen=True, kw_only=True)
class Lag:
    """The undelivered part of the outbox: how many events, and the age of the oldest."""

    pending: int
    oldest_received_us: int | None
    lag_seconds: float


async def outbox_lag(engine: AsyncEngine) -> Lag:
    query = select(func.count(), func.min(events.c.received_at)).where(
        events.c.delivered_at.is_(None)
    )
    async with engine.connect() as conn:
        pending, oldest = (await conn.execute(query)).one()
    lag = 0.0 if oldest is None else max(0.0, (now_us() - oldest) / 1_000_000)
    return Lag(pending=int(pending), oldest_received_us=oldest, lag_seconds=lag)


@dataclass(kw_only=True)
class RelayStats:
    delivered: int = 0  # rows this relay marked delivered
    duplicates: int = 0  # of those, acks saying the broker already had the message
    unacked: int = 0  # publishes that got no ack (left undelivered, published again later)


class PublishFailed(Exception):
    """Some events of a batch were not acknowledged; they stay undelivered."""


class Relay:
    """One relay over ``engine``'s outbox, publishing through ``publisher``: a batch is
    published whole before its acks are awaited."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        *,
        stream: str,
        subject_prefix: str,
        batch_size: int = 1000,
        ack_timeout_s: float = ACK_TIMEOUT_SECONDS,
        depth: int = PIPELINE_DEPTH,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.batch_size = batch_size
        self.ack_timeout_s = ack_timeout_s
        self.stats = RelayStats()
        self._locking = not is_sqlite(engine)
        claim = (
            select(
                events.c.seq,
                events.c.project_id,
                events.c.event_id,
                events.c.event_type,
                events.c.payload,
            )
            .where(events.c.delivered_at.is_(None))
            .order_by(events.c.seq)
            .limit(batch_size)
        )
        if self._locking:
            self._claim = claim.with_for_update(skip_locked=True)
        else:  # past the rows in flight: the batches claimed but not yet marked
            self._claim = claim.where(events.c.seq > bindparam("after"))
        self.depth = depth
        self._after = 0
        self._in_flight = 0
        self._sending = asyncio.Lock()
        self._stream_ready = False
        self._subjects: dict[tuple[str, str], str] = {}

    async def ensure_stream(self) -> None:
        """Create the stream (subjects ``<prefix>.>``) unless it exists; never change one."""
        info = await self.publisher.api(f"STREAM.INFO.{self.stream}")
        error = info.get("error")
        if error and error.get("err_code") == STREAM_NOT_FOUND:
            config = {
                "name": self.stream,
                "subjects": [f"{self.subject_prefix}.>"],
                "duplicate_window": int(DUPLICATE_WINDOW_SECONDS * 1e9),
                "retention": "limits",
                "storage": "file",
                "num_replicas": 1,
            }
            created = await self.publisher.api(f"STREAM.CREATE.{self.stream}", config)
            if "error" not in created:
                log.info("created JetStream stream %s (%s.>)", self.stream, self.subject_prefix)
            else:  # another relay may have created it meanwhile
                info = await self.publisher.api(f"STREAM.INFO.{self.stream}")
                error = info.get("error")
        if error and error.get("err_code") != STREAM_NOT_FOUND:
            raise PublishFailed(f"stream {self.stream}: {error.get('description', error)}")
        self._stream_ready = True

    async def step(self) -> int:
        """Claim, publish and mark one batch; the number of rows claimed (0: none undelivered,
        or all claimed by other relays). Raises ``PublishFailed`` after marking what was acked.

        Up to ``depth`` steps run at once (``run``, ``drain``): each claims and sends its batch
        under one lock, so batches enter the stream in claim order, then awaits its acks and
        marks its rows while the next batch is claimed and sent."""
        if not self._stream_ready:
            async with self._sending:
                if not self._stream_ready:
                    await self.ensure_stream()
        if self._locking:
            async with self.engine.begin() as conn:
                async with self._sending:
                    rows = (await conn.execute(self._claim)).all()
                    batch = await self._send(rows)
                acked = await self._confirm(rows, batch)
                if acked:
                    await conn.execute(_MARK_ANY, {"seqs": acked, "t": now_us()})
        else:
            async with self._sending:
                async with self.engine.connect() as conn:
                    rows = (await conn.execute(self._claim, {"after": self._after})).all()
                if rows:
                    self._after = rows[-1].seq
                elif not self._in_flight:
                    self._after = 0  # caught up: the next claim looks at the whole outbox again
                batch = await self._send(rows)
                self._in_flight += 1
            try:  # in flight until marked: a claim meanwhile must not take these rows again
                acked = await self._confirm(rows, batch)
                if len(acked) < len(rows):  # claimed again next (with what is in flight past them)
                    done = set(acked)
                    first = next(row.seq for row in rows if row.seq not in done)
                    self._after = min(self._after, first - 1)
                async with self.engine.begin() as conn:
                    if acked and len(acked) == len(rows):
                        bounds = {"lo": acked[0], "hi": acked[-1], "t": now_us()}
                        await conn.execute(_MARK_RANGE, bounds)
                    else:
                        await self._mark(conn, acked)
            finally:
                self._in_flight -= 1
        self.stats.delivered += len(acked)
        if len(acked) < len(rows):
            self.stats.unacked += len(rows) - len(acked)
            raise PublishFailed(f"{len(rows) - len(acked)} of {len(rows)} events were not acked")
        return len(rows)

    def _subject(self, project_id: str, event_type: str) -> str:
        subject = self._subjects.get((project_id, event_type))
        if subject is None:
            if len(self._subjects) > 10_000:
                self._subjects.clear()
            subject = (
                f"{self.subject_prefix}.{subject_token(project_id)}.{subject_token(event_type)}"
            )
            self._subjects[(project_id, event_type)] = subject
        return subject

    async def _send(self, rows: Sequence[Any]) -> Batch | None:
        """Write ``rows`` to the broker in order (None: nothing to send, or no connection)."""
        if not rows:
            return None
        subject = self._subject
        messages = [
            (subject(r.project_id, r.event_type), f"{r.project_id}:{r.event_id}", r.payload)
            for r in rows
        ]
        try:
            await self.publisher.connect()
            return self.publisher.send(messages)
        except (OSError, TimeoutError, NatsError) as exc:
            log.warning("publishing %d events failed: %r", len(rows), exc)
            return None

    async def _confirm(self, rows: Sequence[Any], batch: Batch | None) -> list[int]:
        """The seqs of ``rows`` the broker acked."""
        if batch is None:
            return []
        answers = await self.publisher.confirm(batch, timeout_s=self.ack_timeout_s)
        acked = [row.seq for row, answer in zip(rows, answers, strict=True) if answer in ACKED]
        self.stats.duplicates += answers.count(DUPLICATE)
        failed = answers.count(FAILED) + answers.count(NO_STREAM)
        if NO_STREAM in answers:
            self._stream_ready = False  # the broker lost the stream: create it again
        if len(acked) < len(rows):
            log.warning(
                "%d of %d events not acked (%s)",
                len(rows) - len(acked),
                len(rows),
                f"{failed} refused" if failed else f"no ack within {self.ack_timeout_s:g}s",
            )
        return acked

    @staticmethod
    async def _mark(conn: AsyncConnection, seqs: list[int]) -> None:
        if seqs:  # executemany: one prepared statement (a long IN list is compiled anew each time)
            now = now_us()
            await conn.execute(_MARK, [{"s": seq, "t": now} for seq in seqs])

    async def drain(self, *, max_failures: int = ONCE_MAX_FAILURES) -> None:
        """Deliver until nothing is claimable; give up after ``max_failures`` failed steps in a
        row (re-raising the last error)."""
        await _together(self._drain(max_failures) for _ in range(self.depth))

    async def _drain(self, max_failures: int) -> None:
        await until_empty(self.step, max_failures=max_failures, what="relay step")

    async def run(
        self,
        stop: asyncio.Event,
        *,
        poll_s: float,
        on_progress: Callable[[int, Lag], None] | None = None,
    ) -> None:
        """Deliver until ``stop`` is set (the batches in flight are finished first). Every
        ``PROGRESS_SECONDS`` ``on_progress`` gets the events delivered since its last call and the
        outbox's lag (metrics); every ``REPORT_SECONDS`` the same is logged."""
        await _together(
            self._run(stop, poll_s=poll_s, on_progress=on_progress, lead=i == 0)
            for i in range(self.depth)
        )

    async def _run(
        self,
        stop: asyncio.Event,
        *,
        poll_s: float,
        on_progress: Callable[[int, Lag], None] | None,
        lead: bool,
    ) -> None:
        """One of the ``depth`` loops of ``run``; the ``lead`` one reports."""
        backoff, checked, logged, reported = 0.0, time.monotonic(), time.monotonic(), 0
        while not stop.is_set():
            try:
                claimed = await self.step()
                backoff = 0.0
                now = time.monotonic()
                report = lead and now - logged >= REPORT_SECONDS
                progress = lead and on_progress is not None and now - checked >= PROGRESS_SECONDS
                if report or progress:
                    checked, lag = now, await outbox_lag(self.engine)
                    if on_progress is not None:
                        on_progress(self.stats.delivered - reported, lag)
                        reported = self.stats.delivered
                    if report:
                        logged = now
                        log.info(
                            "relay: %d delivered (%d duplicates dropped), %d pending, lag %.1fs",
                            self.stats.delivered,
                            self.stats.duplicates,
                            lag.pending,
                            lag.lag_seconds,
                        )
            except Exception as exc:
                backoff = min(5.0, backoff * 2 or 0.2)
                log.warning("relay step failed, retrying in %.1fs: %r", backoff, exc)
                await _sleep(stop, backoff)
                continue
            if claimed < self.batch_size:
                await _sleep(stop, poll_s)


async def until_empty(step: Callable[[], Awaitable[int]], *, max_failures: int, what: str) -> None:
    """Run ``step`` until it claims nothing; give up after ``max_failures`` failures in a row
    (re-raising the last error), waiting longer after each."""
    failures = 0
    while True:
        try:
            if await step() == 0:
                return
            failures = 0
        except Exception as exc:
            failures += 1
            if failures >= max_failures:
                raise
            log.warning("%s failed (%d of %d): %r", what, failures, max_failures, exc)
            await asyncio.sleep(min(5.0, 0.2 * 2**failures))


async def _together(loops: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``loops`` at once until all return; the first error cancels the others and is
    raised."""
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
