"""SQLite WAL checkpoints, off the commit path and off the event loop.

In WAL mode a commit appends its pages to the write-ahead log, synced before the commit returns;
a checkpoint later copies them into the database file and syncs it. By default SQLite
checkpoints inside whichever commit takes the log past ``wal_autocheckpoint`` pages (1000, 4 MB):
at ingest rates that is every few group commits, and each such commit also waits for the copy and
the sync. Instead, every connection's threshold is ``AUTOCHECKPOINT_PAGES`` (a safety net: a
commit checkpoints only if the thread below falls that far behind), and ``WalCheckpointer``
checkpoints every ``INTERVAL_S`` on a thread and a plain ``sqlite3`` connection of its own, in
``PASSIVE`` mode: it copies what no reader still needs, never waits for a lock, and the writer
goes on committing meanwhile.

The interval is short on purpose. The copy and the sync of the database file share the disk with
the writer's own log syncs: a checkpoint that has megabytes to flush stalls the commits that
sync beside it, so many small checkpoints keep commit latency even where a few large ones make
its tail. A thread, not an event-loop task, because under load each hop through the loop waits
behind the requests queued there; the thread needs the GIL only between checkpoints.
Durability is unchanged; only where the copying happens moves.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of log at SQLite's default 4 KiB pages
INTERVAL_S = 0.01
RETRY_AFTER_ERROR_S = 1.0


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite database at ``path`` from a daemon thread."""

    def __init__(
        self, path: str, *, synchronous: str = "FULL", interval_s: float = INTERVAL_S
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one checkpoint at a time on the connection
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # The checkpoint syncs the database file unless synchronous is OFF: it follows the
            # gateway's own setting, so a checkpointed page is as durable as a committed one.
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._conn = conn
        return self._conn

    def checkpoint(self) -> tuple[int, int]:
        """One passive checkpoint: (pages in the log, pages of it now in the database file);
        (-1, -1) when it could not run, e.g. while another connection checkpoints."""
        with self._lock:
            _busy, pages, copied = (
                self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            )
        return int(pages), int(copied)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="eventgw-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (after its current checkpoint) and close its connection."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.checkpoint()
            except sqlite3.Error:  # the commit path's own checkpoint still bounds the log
                log.warning("WAL checkpoint failed", exc_info=True)
                self._stop.wait(RETRY_AFTER_ERROR_S)
