"""What has served its time leaves the database, in the serving process: every ``interval_s`` the
delivered events older than ``event_retention_seconds`` (0: kept for ever; undelivered events
never go, however old) are deleted in chunks that hold SQLite's one writer for a few
milliseconds each, and the expired idempotency keys with them. ``eventgw purge`` does the same
once. The failed-events table has its own retention (``gateway.failures``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.engine import now_us
from gateway.storage.idempotency import IdempotencyStore
from gateway.storage.retention import purge_delivered

log = logging.getLogger(__name__)

INTERVAL_S = 60.0
PAUSE_S = 0.005  # between chunks: the group commits go on meanwhile


async def purge_once(
    engine: AsyncEngine, idempotency: IdempotencyStore, event_retention_seconds: float
) -> tuple[int, int]:
    """(delivered events, idempotency keys) deleted now."""
    events = 0
    if event_retention_seconds > 0:
        cutoff = now_us() - int(event_retention_seconds * 1_000_000)
        events = await purge_delivered(engine, cutoff, pause_s=PAUSE_S)
    return events, await idempotency.purge()


class Retention:
    """The background task of ``purge_once``, every ``interval_s``."""

    def __init__(
        self,
        engine: AsyncEngine,
        idempotency: IdempotencyStore,
        *,
        event_retention_seconds: float,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.engine = engine
        self.idempotency = idempotency
        self.event_retention_seconds = event_retention_seconds
        self.interval_s = interval_s
        self.deleted_events = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="eventgw-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                events, keys = await purge_once(
                    self.engine, self.idempotency, self.event_retention_seconds
                )
            except Exception as exc:  # the database is down: try again next time
                log.warning("retention failed: %r", exc)
                continue
            self.deleted_events += events
            if events or keys:
                log.info(
                    "retention: %d delivered events, %d idempotency keys deleted", events, keys
                )
