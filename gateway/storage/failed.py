"""The events the gateway refused, kept for a while so that someone can see later what was sent
and why it failed (``failed_events``).

``record`` keeps a batch of refusals in one short transaction of its own, never the writer's: a
refusal is kept on a best-effort basis and never delays or fails what was accepted. Each item's
bytes are cut to ``MAX_RAW_BYTES`` (its whole size is kept). A project holds at most
``cap_per_project`` rows (concurrent writers may overshoot it by a batch): once there, its new
refusals are counted as dropped, not stored, until retention (``purge``, in chunks) makes room
again, so a flood of bad items cannot fill the disk.

``document`` is what one refused item reads as in JSON, wherever it is shown: the lines of
``eventgw events failed --json`` and the messages the relay publishes
(``gateway.delivery.failed``).
``published_at`` (migration 0004) is the relay's: NULL until the broker acknowledged the item.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.retention import purge_older
from gateway.storage.schema import failed_events

MAX_RAW_BYTES = 64 * 1024
DEFAULT_CAP_PER_PROJECT = 100_000
PURGE_CHUNK = 2_000


@dataclass(frozen=True, kw_only=True, slots=True)
class FailedEvent:
    """One refused item: where it came from, why it was refused, and what it was."""

    project_id: str
    dialect: str
    endpoint: str
    received_at: int  # µs since the epoch
    code: str
    message: str
    field: str | None
    raw: bytes  # at most MAX_RAW_BYTES of the item as sent
    raw_size: int  # the item's whole size
    seq: int = 0  # set when read back


def failed(
    *,
    project_id: str,
    dialect: str,
    endpoint: str,
    received_at: int,
    code: str,
    message: str,
    field: str | None,
    raw: bytes,
) -> FailedEvent:
    """A ``FailedEvent`` of ``raw``, cut to ``MAX_RAW_BYTES``."""
    return FailedEvent(
        project_id=project_id,
        dialect=dialect,
        endpoint=endpoint,
        received_at=received_at,
        code=code,
        message=message,
        field=field,
        raw=bytes(raw[:MAX_RAW_BYTES]),
        raw_size=len(raw),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Recorded:
    stored: int
    dropped: int  # over the project's cap


class FailedEventStore:
    def __init__(self, engine: AsyncEngine, *, cap_per_project: int = DEFAULT_CAP_PER_PROJECT):
        self.engine = engine
        self.cap_per_project = cap_per_project

    async def record(self, refused: Sequence[FailedEvent]) -> Recorded:
        """Keep ``refused`` (several projects allowed), each project up to its cap."""
        if not refused:
            return Recorded(stored=0, dropped=0)
        by_project: dict[str, list[FailedEvent]] = {}
        for item in refused:
            by_project.setdefault(item.project_id, []).append(item)
        rows: list[dict[str, object]] = []
        async with self.engine.begin() as conn:
            for project_id, items in by_project.items():
                held = (
                    await conn.execute(
                        select(func.count()).where(failed_events.c.project_id == project_id)
                    )
                ).scalar_one()
                room = max(0, self.cap_per_project - held)
                rows.extend(_row(item) for item in items[:room])
            if rows:
                await conn.execute(insert(failed_events), rows)
        return Recorded(stored=len(rows), dropped=len(refused) - len(rows))

    async def list(
        self, project_id: str, *, since_us: int | None = None, limit: int | None = None
    ) -> list[FailedEvent]:
        """A project's refused items, oldest first (from ``since_us`` on)."""
        query = (
            select(failed_events)
            .where(failed_events.c.project_id == project_id)
            .order_by(failed_events.c.received_at, failed_events.c.seq)
        )
        if since_us is not None:
            query = query.where(failed_events.c.received_at >= since_us)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            found = (await conn.execute(query)).mappings().all()
        return [read(row) for row in found]

    async def purge(self, older_than_us: int, *, chunk: int = PURGE_CHUNK) -> int:
        """Delete the items received before ``older_than_us``, ``chunk`` rows per transaction
        (a short one each: never a long hold on SQLite's one writer); how many went."""
        return await purge_older(self.engine, failed_events, older_than_us, chunk=chunk)


def read(row: RowMapping) -> FailedEvent:
    """The ``FailedEvent`` of a ``failed_events`` row."""
    return FailedEvent(
        seq=row["seq"],
        project_id=row["project_id"],
        dialect=row["dialect"],
        endpoint=row["endpoint"],
        received_at=row["received_at"],
        code=row["code"],
        message=row["message"],
        field=row["field"],
        raw=bytes(row["raw"]),
        raw_size=row["raw_size"],
    )


def document(item: FailedEvent) -> dict[str, Any]:
    """``item`` as a JSON object: the receive time in ISO 8601, the bytes as ``raw`` when they
    are UTF-8 text (a JSON item as sent), else as ``raw_base64`` (Protobuf, binary, or text cut
    inside a character at ``MAX_RAW_BYTES``)."""
    try:
        raw = {"raw": item.raw.decode()}
    except UnicodeDecodeError:
        raw = {"raw_base64": base64.b64encode(item.raw).decode()}
    return {
        "project_id": item.project_id,
        "received_at": datetime.fromtimestamp(item.received_at / 1e6, tz=UTC).isoformat(),
        "dialect": item.dialect,
        "endpoint": item.endpoint,
        "code": item.code,
        "message": item.message,
        "field": item.field,
        **raw,
        "raw_size": item.raw_size,
    }


def _row(item: FailedEvent) -> dict[str, object]:
    return {
        "project_id": item.project_id,
        "dialect": item.dialect,
        "endpoint": item.endpoint,
        "received_at": item.received_at,
        "code": item.code,
        "message": item.message,
        "field": item.field,
        "raw": item.raw,
        "raw_size": item.raw_size,
    }
