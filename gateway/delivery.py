"""Delivery of the outbox to NATS JetStream: committed, undelivered events from the ``events``
table become stream messages, exactly once in the stream, in commit order (``Relay``); and the
outbox's backlog (``outbox_lag``). ``gateway.relay`` runs this as the ``eventgw relay`` process.

One step claims a batch of undelivered rows in ``seq`` order, publishes each stored payload (the
serialized canonical ``Event``) to ``<prefix>.<project id>.<event type>`` with header
``Nats-Msg-Id: <project id>:<event id>``, publishes the whole batch at once and awaits the
broker's acks, then sets ``delivered_at`` on the acknowledged rows. Nothing is marked delivered
before its ack, so a crash or a broker outage loses nothing: the rows stay undelivered and are
published again, and the stream's duplicate window (``DUPLICATE_WINDOW_SECONDS``) drops a copy of
a message it already stored (a crash between the ack and the commit). The events of a batch that
were not acked are published again after the acked ones, so only a failure reorders the stream.

On PostgreSQL the claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` and the publish and the update
happen inside the transaction that holds the row locks: several relays (processes, machines) share
the outbox, each batch goes to exactly one of them, and a relay that dies releases its rows with
its connection. Order then holds per relay, not across relays. SQLite has one writer and no row
locks: run one relay per SQLite file (a second one would publish the same rows; the broker would
drop the copies). There the claim is a plain read and the update a short write transaction of its
own, so the relay never holds SQLite's write lock while it waits for the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.jetstream import (
    ACKED,
    DUPLICATE,
    FAILED,
    NO_STREAM,
    STREAM_NOT_FOUND,
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
        self._claim = claim.with_for_update(skip_locked=True) if self._locking else claim
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
        or all claimed by other relays). Raises ``PublishFailed`` after marking what was acked."""
        if not self._stream_ready:
            await self.ensure_stream()
        if self._locking:
            async with self.engine.begin() as conn:
                rows = (await conn.execute(self._claim)).all()
                acked = await self._publish(rows)
                if acked:
                    await conn.execute(_MARK_ANY, {"seqs": acked, "t": now_us()})
        else:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(self._claim)).all()
            acked = await self._publish(rows)
            async with self.engine.begin() as conn:
                if acked and len(acked) == len(rows):
                    bounds = {"lo": acked[0], "hi": acked[-1], "t": now_us()}
                    await conn.execute(_MARK_RANGE, bounds)
                else:
                    await self._mark(conn, acked)
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

    async def _publish(self, rows: Sequence[Any]) -> list[int]:
        """Publish ``rows`` in order without waiting in between; the seqs the broker acked."""
        if not rows:
            return []
        subject = self._subject
        messages = [
            (subject(r.project_id, r.event_type), f"{r.project_id}:{r.event_id}", r.payload)
            for r in rows
        ]
        try:
            answers = await self.publisher.publish(messages, timeout_s=self.ack_timeout_s)
        except (OSError, TimeoutError, NatsError) as exc:
            log.warning("publishing %d events failed: %r", len(rows), exc)
            return []
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
        failures = 0
        while True:
            try:
                if await self.step() == 0:
                    return
                failures = 0
            except Exception as exc:
                failures += 1
                if failures >= max_failures:
                    raise
                log.warning("relay step failed (%d of %d): %r", failures, max_failures, exc)
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))

    async def run(
        self,
        stop: asyncio.Event,
        *,
        poll_s: float,
        on_progress: Callable[[int, Lag], None] | None = None,
    ) -> None:
        """Deliver until ``stop`` is set (the current batch is finished first). Every
        ``PROGRESS_SECONDS`` ``on_progress`` gets the events delivered since its last call and the
        outbox's lag (metrics); every ``REPORT_SECONDS`` the same is logged."""
        backoff, checked, logged, reported = 0.0, time.monotonic(), time.monotonic(), 0
        while not stop.is_set():
            try:
                claimed = await self.step()
                backoff = 0.0
                now = time.monotonic()
                report = now - logged >= REPORT_SECONDS
                if report or (on_progress is not None and now - checked >= PROGRESS_SECONDS):
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


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
