"""Readiness, shared by ``GET /readyz`` and the gRPC health service.

Ready means: the database answers, its schema is at the migrations' head, and writes can
succeed: fewer than ``failure_limit`` group commits failed in a row (a success resets the count;
so does ``retry_seconds`` without a failure, letting a trickle of traffic find out whether writes
work again), and an SQLite database has at least ``min_free_bytes`` of room left: free disk space
where its file lives, within its ``max_page_count`` (``sqlite_max_bytes``), counting its free
pages. The outbox relay runs in a process of its own and is not part of a serving process's
readiness. Liveness (``/healthz``) needs none of this: the process answers.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrate


@dataclass(frozen=True, kw_only=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, str]:
        return {"status": "ok" if self.ready else "unavailable", **self.checks}


class Health:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cache_seconds: float = 1.0,
        commit_failures: Callable[[], tuple[int, float]] | None = None,
        failure_limit: int = 3,
        retry_seconds: float = 10.0,
        database_file: str | None = None,
        min_free_bytes: int = 0,
    ) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.commit_failures = commit_failures
        self.failure_limit = failure_limit
        self.retry_seconds = retry_seconds
        self.database_file = database_file
        self.min_free_bytes = min_free_bytes
        self._directory = (
            None if database_file is None else os.path.dirname(os.path.abspath(database_file))
        )
        self._head = migrate.head_revision()
        self._last: tuple[float, Readiness] | None = None

    @property
    def _disk_free(self) -> int:
        """Free bytes on the database file's filesystem (one statvfs call)."""
        assert self._directory is not None
        return shutil.disk_usage(self._directory).free

    async def check(self) -> Readiness:
        checks: dict[str, str] = {}
        ready = True
        try:
            async with self.engine.connect() as conn:
                revision = await conn.run_sync(_revision)
                room = None if self.database_file is None else await conn.run_sync(_room)
        except Exception as exc:
            ready = False
            checks["database"] = f"unreachable: {type(exc).__name__}"
        else:
            checks["database"] = "ok"
            if revision == self._head:
                checks["schema"] = revision or "empty"
            else:
                ready = False
                checks["schema"] = (
                    f"at {revision or 'nothing'}, head is {self._head}: run `eventgw db upgrade`"
                )
            if room is not None and self.database_file is not None:
                reusable, headroom = room
                free = min(self._disk_free, headroom) + reusable
                if free < self.min_free_bytes:
                    ready = False
                    checks["disk"] = f"{free} bytes free, below {self.min_free_bytes}"
                else:
                    checks["disk"] = "ok"
        if self.commit_failures is not None:
            failures, failed_at = self.commit_failures()
            recent = time.monotonic() - failed_at < self.retry_seconds
            if failures >= self.failure_limit and recent:
                ready = False
                checks["writes"] = f"failing: the last {failures} group commits failed"
            else:
                checks["writes"] = "ok"
        readiness = Readiness(ready=ready, checks=checks)
        self._last = (time.monotonic(), readiness)
        return readiness

    async def cached(self) -> Readiness:
        """``check()``, at most once per ``cache_seconds`` (for frequent gRPC health probes)."""
        if self._last is not None and time.monotonic() - self._last[0] < self.cache_seconds:
            return self._last[1]
        return await self.check()


def _room(conn: Connection) -> tuple[int, int]:
    """An SQLite database's room: bytes in its free pages (reused before it grows), and bytes it
    may still grow by within its ``max_page_count``."""

    def pragma(name: str) -> int:
        return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar() or 0)

    page_size = pragma("page_size")
    pages, free_pages, max_pages = (
        pragma("page_count"),
        pragma("freelist_count"),
        pragma("max_page_count"),
    )
    return free_pages * page_size, max(0, max_pages - pages) * page_size


def _revision(conn: Connection) -> str | None:
    """The schema's Alembic revision, read directly: Alembic's own ``MigrationContext`` logs two
    INFO lines per call, too many for a probe every few seconds."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)
