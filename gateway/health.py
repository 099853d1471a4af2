"""Readiness, shared by ``GET /readyz`` and the gRPC health service.

Ready means: the database answers and its schema is at the migrations' head. The outbox relay
runs in a process of its own and is not part of a serving process's readiness. Liveness
(``/healthz``) needs none of this: the process answers.
"""

from __future__ import annotations

import time
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
    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 1.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._head = migrate.head_revision()
        self._last: tuple[float, Readiness] | None = None

    async def check(self) -> Readiness:
        checks: dict[str, str] = {}
        ready = True
        try:
            async with self.engine.connect() as conn:
                revision = await conn.run_sync(_revision)
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
        readiness = Readiness(ready=ready, checks=checks)
        self._last = (time.monotonic(), readiness)
        return readiness

    async def cached(self) -> Readiness:
        """``check()``, at most once per ``cache_seconds`` (for frequent gRPC health probes)."""
        if self._last is not None and time.monotonic() - self._last[0] < self.cache_seconds:
            return self._last[1]
        return await self.check()


def _revision(conn: Connection) -> str | None:
    """The schema's Alembic revision, read directly: Alembic's own ``MigrationContext`` logs two
    INFO lines per call, too many for a probe every few seconds."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)
