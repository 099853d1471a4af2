"""Publishing the failed events to NATS JetStream, beside the outbox relay (``relay_failed_events``,
off by default): each item the failed-events table holds becomes one message, exactly once in the
stream, in ``seq`` order (``FailedEventRelay``). ``gateway.delivery.process`` runs it next to the
``Relay`` (``failed_relay``: one when the setting is on; ``running``: its task for the relay's
lifetime).

A message is the item's JSON ``document`` (``gateway.storage.failed``, what ``eventgw events
failed --json`` prints: project, receive time, dialect, endpoint, reason code, message, field, the
bytes as ``raw`` text or ``raw_base64``, their whole size) on ``<prefix>.failed.<project id>``
with header ``Nats-Msg-Id: failed:<seq>:<received_at>``. The stream the relay creates takes
``<prefix>.>``, so it holds them too; they cannot be taken for events, whose subjects are
``<prefix>.<project id>.<event type>``: a project id is a UUID, never ``failed``. A consumer of
every event on ``<prefix>.>`` (or ``<prefix>.*.*``) sees the failed events as well and should
leave out ``<prefix>.failed.>``.

One step claims up to ``batch_size`` unpublished rows (``published_at`` NULL) in ``seq`` order,
publishes them as one batch on the outbox relay's connection (``gateway.delivery.jetstream``),
awaits their acks, and sets ``published_at`` on those that were acked. Nothing is marked before
its ack; a crash between the ack and the mark publishes the row again and the stream's duplicate
window drops the copy. As in ``gateway.delivery.outbox``, PostgreSQL claims with ``FOR UPDATE
SKIP LOCKED`` inside the transaction that marks (any number of relays), SQLite with a plain read
and a short write of its own (one relay per file).

Retention does not wait for publishing: failed events are diagnostics with their own retention
(``failed_event_retention_seconds``) and per-project cap, not acknowledged data, so an item
still unpublished when its time is up (a relay stopped for longer than the retention) is deleted
unpublished, and a project's cap counts published and unpublished rows alike. Turning the setting
on publishes what the table holds at that moment (at most the retention's worth) before new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import Update, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.delivery.jetstream import ACKED, DUPLICATE, NO_STREAM, NatsError, Publisher
from gateway.delivery.outbox import (
    ACK_TIMEOUT_SECONDS,
    ONCE_MAX_FAILURES,
    subject_token,
    until_empty,
)
from gateway.storage.engine import is_sqlite, now_us
from gateway.storage.failed import FailedEvent, document, read
from gateway.storage.schema import failed_events

log = logging.getLogger(__name__)

SUBJECT_TOKEN = "failed"
BATCH_SIZE = 100


def subject(prefix: str, project_id: str) -> str:
    """Where a project's failed events go: ``<prefix>.failed.<project id>``."""
    return f"{prefix}.{SUBJECT_TOKEN}.{subject_token(project_id)}"


def message_id(item: FailedEvent) -> str:
    """``failed:<seq>:<received_at>``: SQLite hands a row id out again once the table was
    emptied whole; with its receive time the id never names two items."""
    return f"{SUBJECT_TOKEN}:{item.seq}:{item.received_at}"


@dataclass(kw_only=True)
class FailedRelayStats:
    published: int = 0  # rows marked published
    duplicates: int = 0  # of those, acks saying the broker already had the message


class NotPublished(Exception):
    """A failed event was not acknowledged; it and those after it stay unpublished."""


class FailedEventRelay:
    """Publishes ``engine``'s failed events through ``publisher``. ``ensure_stream`` (the outbox
    relay's) is awaited before the first publish and again after the broker said no stream
    listens."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        *,
        subject_prefix: str,
        ensure_stream: Callable[[], Awaitable[None]],
        batch_size: int = BATCH_SIZE,
        ack_timeout_s: float = ACK_TIMEOUT_SECONDS,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.subject_prefix = subject_prefix
        self.ensure_stream = ensure_stream
        self.batch_size = batch_size
        self.ack_timeout_s = ack_timeout_s
        self.stats = FailedRelayStats()
        self._locking = not is_sqlite(engine)
        claim = (
            select(failed_events)
            .where(failed_events.c.published_at.is_(None))
            .order_by(failed_events.c.seq)
            .limit(batch_size)
        )
        self._claim = claim.with_for_update(skip_locked=True) if self._locking else claim
        self._stream_ready = False

    async def step(self) -> int:
        """Claim, publish and mark one batch; the number of rows claimed (0: none unpublished,
        or all claimed by other relays). Raises ``NotPublished`` after marking what was acked."""
        if not self._stream_ready:
            await self.ensure_stream()
            self._stream_ready = True
        if self._locking:
            async with self.engine.begin() as conn:
                items = [read(row) for row in (await conn.execute(self._claim)).mappings()]
                acked = await self._publish(items)
                if acked:
                    await conn.execute(self._mark(acked))
        else:
            async with self.engine.connect() as conn:
                items = [read(row) for row in (await conn.execute(self._claim)).mappings()]
            acked = await self._publish(items)
            if acked:
                async with self.engine.begin() as conn:
                    await conn.execute(self._mark(acked))
        self.stats.published += len(acked)
        if len(acked) < len(items):
            raise NotPublished(f"{len(items) - len(acked)} of {len(items)} failed events left")
        return len(items)

    async def _publish(self, items: list[FailedEvent]) -> list[int]:
        """Publish ``items`` in order as one batch; the acked seqs."""
        if not items:
            return []
        messages = [
            (
                subject(self.subject_prefix, item.project_id),
                message_id(item),
                orjson.dumps(document(item)),
            )
            for item in items
        ]
        try:
            answers = await self.publisher.publish(messages, timeout_s=self.ack_timeout_s)
        except (OSError, TimeoutError, NatsError) as exc:  # tried again next step
            log.warning("%d failed events not published: %r", len(items), exc)
            return []
        if NO_STREAM in answers:
            self._stream_ready = False  # the broker lost the stream: create it again
        self.stats.duplicates += answers.count(DUPLICATE)
        return [item.seq for item, answer in zip(items, answers, strict=True) if answer in ACKED]

    @staticmethod
    def _mark(seqs: list[int]) -> Update:
        return (
            update(failed_events).where(failed_events.c.seq.in_(seqs)).values(published_at=now_us())
        )

    async def drain(self, *, max_failures: int = ONCE_MAX_FAILURES) -> None:
        """Publish until nothing is claimable; give up after ``max_failures`` failed steps in a
        row (re-raising the last error)."""
        await until_empty(self.step, max_failures=max_failures, what="failed-events step")

    async def run(
        self,
        stop: asyncio.Event,
        *,
        poll_s: float,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        """Publish until ``stop`` is set (the current batch is finished first); ``on_published``
        gets the number of rows each step marked (metrics)."""
        backoff = 0.0
        while not stop.is_set():
            before = self.stats.published
            try:
                claimed = await self.step()
                backoff = 0.0
            except Exception as exc:
                claimed = 0
                backoff = min(5.0, backoff * 2 or 0.2)
                log.warning("failed-events step failed, retrying in %.1fs: %r", backoff, exc)
            if on_published is not None and self.stats.published > before:
                on_published(self.stats.published - before)
            if backoff or claimed < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff or poll_s)


def failed_relay(
    settings: Settings,
    engine: AsyncEngine,
    publisher: Publisher,
    *,
    ensure_stream: Callable[[], Awaitable[None]],
) -> FailedEventRelay | None:
    """The failed events' relay of ``settings`` (None: ``relay_failed_events`` is off)."""
    if not settings.relay_failed_events:
        return None
    return FailedEventRelay(
        engine, publisher, subject_prefix=settings.nats_subject_prefix, ensure_stream=ensure_stream
    )


@contextlib.asynccontextmanager
async def running(
    failed: FailedEventRelay | None, stop: asyncio.Event, settings: Settings
) -> AsyncIterator[None]:
    """``failed.run`` in a task for the length of the block (nothing when ``failed`` is None):
    once ``stop`` is set it finishes its batch; if the block ends otherwise, it is cancelled.
    Under ``serve --relay`` its count joins the workers' metrics."""
    if failed is None:
        yield
        return
    on_published = None
    if settings.prometheus_multiproc_dir is not None:
        # A Metrics of its own beside the outbox relay's: multi-process samples are kept per
        # process and family, so both add to the same files.
        from gateway.metrics import Metrics

        metrics = Metrics(multiprocess_dir=settings.prometheus_multiproc_dir)
        on_published = metrics.observe_failed_published
    task = asyncio.create_task(
        failed.run(stop, poll_s=settings.relay_poll_seconds, on_published=on_published),
        name="eventgw-failed-relay",
    )
    try:
        yield
    finally:
        if not stop.is_set():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
