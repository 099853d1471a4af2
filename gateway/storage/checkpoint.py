"""SQLite WAL checkpoints, off the commit path.

In WAL mode a commit appends its pages to the write-ahead log, synced before the commit returns;
a checkpoint later copies them into the database file. By default SQLite checkpoints inside
whichever commit takes the log past ``wal_autocheckpoint`` pages (1000, 4 MB): at ingest rates
that is every few group commits, and each such commit also waits for the copy and a sync of the
database file. Instead, every connection's threshold is ``AUTOCHECKPOINT_PAGES`` (a safety net: a
commit checkpoints only if the task below falls that far behind), and ``WalCheckpointer``
checkpoints every ``INTERVAL_S`` on a connection of its own, in ``PASSIVE`` mode: it copies what
no reader still needs, never waits for a lock, and the writer goes on committing meanwhile.
Durability is unchanged; only where the copying happens moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of log at SQLite's default 4 KiB pages
INTERVAL_S = 0.05


class WalCheckpointer:
    def __init__(self, engine: AsyncEngine, interval_s: float = INTERVAL_S) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def checkpoint(self) -> tuple[int, int]:
        """One passive checkpoint: (pages in the log, pages of it now in the database file);
        (-1, -1) when it could not run, e.g. while another connection checkpoints."""
        async with self.engine.connect() as conn:
            result = await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            _busy, pages, copied = tuple(result.one())
        return int(pages), int(copied)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="eventgw-wal-checkpoint")

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
                await self.checkpoint()
            except Exception:  # the commit path's own checkpoint still bounds the log
                log.warning("WAL checkpoint failed", exc_info=True)
                await asyncio.sleep(1.0)
