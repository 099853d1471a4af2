"""The refused items of the serving process, on their way to the failed-events table.

The pipeline hands ``Refusals.add`` what it refused (per-item rejections, and every item of a
request refused whole for its content) and goes on at once: the items wait in a bounded queue and
one task writes them in batches (``FailedEventStore.record``), off the writer's path, so a flood
of bad input never slows what is accepted. Beyond ``max_queued`` waiting items new ones are
dropped and counted; a crash loses what waits (at most ``flush_seconds`` of refusals): the table
is a diagnostic record, not acknowledged data. The same task deletes refusals older than
``retention_seconds`` (0 keeps them) every ``purge_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from gateway.storage.engine import now_us
from gateway.storage.failed import FailedEvent, FailedEventStore

log = logging.getLogger(__name__)

DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
MAX_QUEUED = 10_000
FLUSH_SECONDS = 0.2
PURGE_SECONDS = 60.0


class Refusals:
    def __init__(
        self,
        store: FailedEventStore,
        *,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        max_queued: int = MAX_QUEUED,
        flush_seconds: float = FLUSH_SECONDS,
        purge_seconds: float = PURGE_SECONDS,
        on_refused: Callable[[Sequence[FailedEvent]], None] | None = None,
    ) -> None:
        self.store = store
        self.retention_seconds = retention_seconds
        self.max_queued = max_queued
        self.flush_seconds = flush_seconds
        self.purge_seconds = purge_seconds
        self.on_refused = on_refused
        self.dropped = 0  # over max_queued, or over a project's cap
        self._queue: list[FailedEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, refused: Sequence[FailedEvent]) -> None:
        """Queue ``refused`` for the table (never blocks, never raises)."""
        if not refused:
            return
        if self.on_refused is not None:
            self.on_refused(refused)
        room = self.max_queued - len(self._queue)
        if room < len(refused):
            self.dropped += len(refused) - max(room, 0)
        self._queue.extend(refused[: max(room, 0)])
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="eventgw-refusals")

    async def stop(self) -> None:
        """Write what waits, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._flush()

    async def flush(self) -> None:
        """Write what waits now (tests, shutdown)."""
        await self._flush()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        purged = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.purge_seconds)
            self._wake.clear()
            await asyncio.sleep(self.flush_seconds)  # gather a batch
            await self._flush()
            if self.retention_seconds > 0 and loop.time() - purged >= self.purge_seconds:
                purged = loop.time()
                await self._purge()

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            recorded = await self.store.record(batch)
            self.dropped += recorded.dropped
        except Exception as exc:  # the database is down: the refusals are lost, not the gateway
            self.dropped += len(batch)
            log.warning("could not keep %d refused events: %r", len(batch), exc)

    async def _purge(self) -> None:
        try:
            await self.store.purge(now_us() - int(self.retention_seconds * 1_000_000))
        except Exception as exc:
            log.warning("could not purge failed events: %r", exc)
