"""Refused events are kept with their reason and bytes, each project up to its cap, and
retention removes the old ones in chunks, published to NATS or not (both backends)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.engine import now_us
from gateway.storage.failed import MAX_RAW_BYTES, FailedEvent, FailedEventStore, failed
from gateway.storage.schema import failed_events


def refusal(project_id: str, n: int, *, at: int | None = None, raw: bytes = b"") -> FailedEvent:
    return failed(
        project_id=project_id,
        dialect="databuddy",
        endpoint="POST /batch",
        received_at=now_us() if at is None else at,
        code="invalid_event",
        message=f"name is required ({n})",
        field="name",
        raw=raw or b'{"path":"/%d"}' % n,
    )


async def test_a_refusal_reads_back_as_it_was_kept(engine: AsyncEngine) -> None:
    store, project = FailedEventStore(engine), str(uuid.uuid4())
    big = b"x" * (MAX_RAW_BYTES + 10)
    result = await store.record([refusal(project, 1), refusal(project, 2, raw=big)])
    assert (result.stored, result.dropped) == (2, 0)
    first, second = await store.list(project)
    assert (first.dialect, first.endpoint, first.code, first.field) == (
        "databuddy",
        "POST /batch",
        "invalid_event",
        "name",
    )
    assert first.message == "name is required (1)" and first.raw == b'{"path":"/1"}'
    assert second.raw == big[:MAX_RAW_BYTES] and second.raw_size == len(big)
    assert await store.list(str(uuid.uuid4())) == []


async def test_a_flood_stops_at_the_projects_cap_and_spares_the_others(
    engine: AsyncEngine,
) -> None:
    store = FailedEventStore(engine, cap_per_project=5)
    flooded, quiet = str(uuid.uuid4()), str(uuid.uuid4())
    first = await store.record([refusal(flooded, n) for n in range(4)])
    second = await store.record([refusal(flooded, n) for n in range(4, 8)] + [refusal(quiet, 0)])
    assert (first.stored, first.dropped) == (4, 0)
    assert (second.stored, second.dropped) == (2, 3)
    kept = await store.list(flooded)
    assert [f.message for f in kept] == [f"name is required ({n})" for n in range(5)]
    assert len(await store.list(quiet)) == 1


async def test_retention_removes_only_the_old_in_chunks(engine: AsyncEngine) -> None:
    store, project = FailedEventStore(engine), str(uuid.uuid4())
    now = now_us()
    old = [refusal(project, n, at=now - 10_000_000 - n) for n in range(7)]
    new = [refusal(project, n, at=now + n) for n in range(7, 10)]
    await store.record(old + new)
    assert await store.purge(now - 1_000_000, chunk=3) == 7
    assert [f.message for f in await store.list(project)] == [
        f"name is required ({n})" for n in range(7, 10)
    ]
    assert await store.purge(now - 1_000_000) == 0


async def test_retention_does_not_wait_for_publishing(engine: AsyncEngine) -> None:
    """Failed events are diagnostics: an old row goes whether the relay published it or not."""
    store, project = FailedEventStore(engine), str(uuid.uuid4())
    now = now_us()
    await store.record([refusal(project, n, at=now - 10_000_000 + n) for n in range(2)])
    async with engine.begin() as conn:
        first = select(func.min(failed_events.c.seq)).scalar_subquery()
        await conn.execute(
            update(failed_events).where(failed_events.c.seq == first).values(published_at=now)
        )
    assert await store.purge(now - 1_000_000) == 2
    assert await store.list(project) == []


async def test_since_and_limit_page_through_a_projects_refusals(engine: AsyncEngine) -> None:
    store, project = FailedEventStore(engine), str(uuid.uuid4())
    await store.record([refusal(project, n, at=1_000_000 * (n + 1)) for n in range(6)])
    page = await store.list(project, since_us=3_000_000, limit=2)
    assert [f.received_at for f in page] == [3_000_000, 4_000_000]
