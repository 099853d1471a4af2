"""The ingestor's group commit on both backends: concurrent requests share one transaction, an
event id repeated within a group or across groups is stored once (the first request to carry it
gets ACCEPTED, later ones DUPLICATE), a keyed request's key and result commit with its events (a
refused one's refusal too; one key sent by several requests at once is stored once and the others
replay it; a failed commit leaves no key behind; a stored key leaves out its own job alone from
a group), an event too large is rejected alone on a
per-item route, and neither several writers of one ingestor nor two ingestors on one database
(two gateway processes) ever store an event twice."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.commit import GroupCommitter, Job, WriterLimits
from gateway.config import Settings
from gateway.errors import PayloadTooLarge, StorageUnavailable, ValidationFailed
from gateway.ingest import Ingestor
from gateway.model import Status, Submission
from gateway.pb.event_pb2 import Event
from gateway.runtime import POSTGRES_WRITERS, open_runtime
from gateway.storage.engine import create_engine
from gateway.storage.events import EventStore
from gateway.storage.idempotency import IdempotencyStore
from tests.gateway.storage.conftest import row

P = str(uuid.uuid4())
A, D = Status.ACCEPTED, Status.DUPLICATE


def ingestor(engine: AsyncEngine, commits: list[int] | None = None) -> Ingestor:
    return Ingestor(
        EventStore(engine),
        IdempotencyStore(engine, retention_s=3600, lock_timeout_s=30),
        WriterLimits(max_delay_s=0.02),
        on_commit=(lambda jobs, _n, _s: commits.append(jobs)) if commits is not None else None,
    )


@pytest.fixture
async def commits_and_ingestor(engine: AsyncEngine) -> AsyncIterator[tuple[list[int], Ingestor]]:
    commits: list[int] = []
    ing = ingestor(engine, commits)
    await ing.start()
    try:
        yield commits, ing
    finally:
        await ing.stop()


def events(*ids: str) -> list[Event]:
    return [Event(id=i, name="purchase") for i in ids]


def sub(batch: list[Event], *, key: str | None = None, per_item: bool = False) -> Submission:
    return Submission(
        project_id=P,
        endpoint="grpc SubmitBatch",
        size=len(batch),
        events=batch,
        idempotency_key=key,
        fingerprint="f",
        per_item=per_item,
    )


async def stored_ids(engine: AsyncEngine) -> list[str]:
    return [Event.FromString(p).id async for p in EventStore(engine).export(P)]


async def test_concurrent_requests_share_a_commit_and_dedup_within_it(
    engine: AsyncEngine, commits_and_ingestor: tuple[list[int], Ingestor]
) -> None:
    commits, ing = commits_and_ingestor
    jobs = [events("a", "b"), events("b", "c", "c"), events("a", "d"), events("e")]
    results = await asyncio.gather(*(ing.submit(sub(j)) for j in jobs))
    statuses = [[o.status for o in r] for r in results]
    assert statuses == [[A, A], [D, A, D], [D, A], [A]]
    assert sum(commits) == len(jobs) and len(commits) < len(jobs)  # coalesced
    assert sorted(await stored_ids(engine)) == ["a", "b", "c", "d", "e"]


async def test_duplicates_across_groups(
    engine: AsyncEngine, commits_and_ingestor: tuple[list[int], Ingestor]
) -> None:
    commits, ing = commits_and_ingestor
    first = await ing.submit(sub(events("a", "b")))
    second = await ing.submit(sub(events("b", "c")))
    assert [o.status for o in first] == [A, A]
    assert [o.status for o in second] == [D, A]
    assert len(commits) == 2
    assert await stored_ids(engine) == ["a", "b", "c"]


async def test_keyed_request_commits_its_result_and_replays(
    engine: AsyncEngine, commits_and_ingestor: tuple[list[int], Ingestor]
) -> None:
    _, ing = commits_and_ingestor
    first = await ing.submit(sub(events("a", "b"), key="k1"))
    plain = await ing.submit(sub(events("b", "x")))
    assert [o.status for o in first] == [A, A] and not first.replayed
    assert [o.status for o in plain] == [D, A]
    again = await ing.submit(sub(events("a", "b"), key="k1"))
    assert again.replayed and list(again) == list(first)
    assert await stored_ids(engine) == ["a", "b", "x"]
    found = await ing.lookup(P, "k1", "grpc SubmitBatch")
    assert found is not None and found.replayed and list(found) == list(first)
    assert await ing.lookup(P, "k1", "POST /batch") is None


async def test_a_refused_request_with_a_key_stores_its_refusal(
    engine: AsyncEngine, commits_and_ingestor: tuple[list[int], Ingestor]
) -> None:
    _, ing = commits_and_ingestor
    refused = dataclasses.replace(
        sub(events("a"), key="k2"), failure=ValidationFailed("bad", field="events[0].name")
    )
    first = await ing.submit(refused)
    assert isinstance(first.error, ValidationFailed) and first.error.field == "events[0].name"
    again = await ing.submit(refused)
    assert again.replayed and isinstance(again.error, ValidationFailed)
    assert (again.error.message, again.accepted, again.rejected_count) == ("bad", 0, 1)
    with pytest.raises(ValidationFailed):  # without a key, nothing to store: raised
        await ing.submit(dataclasses.replace(refused, idempotency_key=None))
    assert await stored_ids(engine) == []


async def test_one_key_sent_at_once_is_stored_once_and_the_others_replay_it(
    database_url: str,
) -> None:
    engines = [create_engine(Settings(database_url=database_url)) for _ in range(2)]
    ings = [ingestor(e) for e in engines]
    for ing in ings:
        await ing.start()
    try:  # three at once through each of two ingestors (two gateway processes)
        results = await asyncio.gather(
            *(ing.submit(sub(events("s-a", "s-b"), key="same")) for ing in ings for _ in range(3))
        )
        assert sorted(await stored_ids(engines[0])) == ["s-a", "s-b"]
    finally:
        for ing in ings:
            await ing.stop()
        for e in engines:
            await e.dispose()
    (first,) = [r for r in results if not r.replayed]
    assert [o.status for o in first] == [A, A]
    assert all(list(r) == list(first) for r in results)


async def test_a_keyed_request_whose_commit_fails_leaves_no_key_behind(
    engine: AsyncEngine,
) -> None:
    store = IdempotencyStore(engine, retention_s=3600, lock_timeout_s=3600)
    committer = GroupCommitter(EventStore(engine), store, WriterLimits())
    request = {"endpoint": "grpc SubmitBatch", "fingerprint": "f"}
    broken = (P, "bad", "grpc", "track", 0, None)  # payload is NOT NULL: the transaction fails
    await committer.start()
    try:
        failing = Job(rows=[row(P, "x"), broken], size=2, claim=store.new_key(P, "k", **request))
        with pytest.raises(StorageUnavailable):
            await committer.commit(failing)
        # Not in flight: the key went with the events, so the retry runs at once.
        assert await store.existing(P, "k", **request) is None
        retry = Job(rows=[row(P, "x")], size=1, claim=store.new_key(P, "k", **request))
        result = await committer.commit(retry)
    finally:
        await committer.stop()
    assert result is not None and result.accepted == 1
    replay = await store.lookup(P, "k")
    assert replay is not None and replay.result == result.encode()
    assert await stored_ids(engine) == ["x"]


async def test_an_event_too_large_is_rejected_alone_where_the_route_answers_per_item(
    engine: AsyncEngine,
) -> None:
    ing = Ingestor(
        EventStore(engine),
        IdempotencyStore(engine, retention_s=3600, lock_timeout_s=30),
        max_event_bytes=200,
    )
    await ing.start()
    try:
        big = Event(id="big", name="x" * 300)
        result = await ing.submit(sub([*events("a"), big, *events("b")], per_item=True))
        assert [o.status for o in result] == [A, Status.REJECTED, A]
        assert (result[1].event_id, result[1].code) == ("big", "too_large")
        assert (result.accepted, result.rejected_count) == (2, 1)
        with pytest.raises(PayloadTooLarge, match="Event 1 is"):
            await ing.submit(sub([*events("c"), big]))
    finally:
        await ing.stop()
    assert await stored_ids(engine) == ["a", "b"]


async def test_two_ingestors_on_one_database_store_each_event_once(database_url: str) -> None:
    engines = [create_engine(Settings(database_url=database_url)) for _ in range(2)]
    ings = [ingestor(e) for e in engines]
    for ing in ings:
        await ing.start()
    try:
        ids = [f"e{i}" for i in range(600)]
        batches = [ids[s : s + 60] for s in range(0, len(ids), 60)]
        results = await asyncio.gather(
            *(ing.submit(sub(events(*b))) for b in batches for ing in ings)
        )
    finally:
        for ing in ings:
            await ing.stop()
    accepted = [o.event_id for r in results for o in r if o.status is A]
    duplicates = [o.event_id for r in results for o in r if o.status is D]
    assert sorted(accepted) == sorted(ids) and sorted(duplicates) == sorted(ids)
    try:
        assert sorted(await stored_ids(engines[0])) == sorted(ids)
    finally:
        for e in engines:
            await e.dispose()


async def test_writers_side_by_side_store_each_event_once(engine: AsyncEngine) -> None:
    # One request a group, so that several are in flight at once; every id is sent in two requests
    # side by side, in opposite orders (on PostgreSQL, rows inserted out of one global order
    # could deadlock).
    ing = Ingestor(
        EventStore(engine),
        IdempotencyStore(engine, retention_s=3600, lock_timeout_s=30),
        WriterLimits(max_events=20, writers=4),
    )
    await ing.start()
    try:
        writers = [t for t in asyncio.all_tasks() if t.get_name().startswith("eventgw-writer-")]
        assert len(writers) == 4
        ids = [f"w{i}" for i in range(1000)]
        batches = [ids[s : s + 20] for s in range(0, len(ids), 20)]
        requests = [events(*order) for b in batches for order in (b, b[::-1])]
        results = await asyncio.gather(*(ing.submit(sub(r)) for r in requests))
    finally:
        await ing.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("eventgw-writer-")]
    accepted = [o.event_id for r in results for o in r if o.status is A]
    duplicates = [o.event_id for r in results for o in r if o.status is D]
    assert sorted(accepted) == sorted(ids) and sorted(duplicates) == sorted(ids)
    assert sorted(await stored_ids(engine)) == sorted(ids)


async def test_group_commits_in_flight_default_to_one_on_sqlite_and_several_on_postgres(
    database_url: str,
) -> None:
    sqlite = database_url.startswith("sqlite")
    async with open_runtime(Settings(database_url=database_url)) as runtime:
        assert runtime.ingestor.limits.writers == (1 if sqlite else POSTGRES_WRITERS)
    async with open_runtime(Settings(database_url=database_url, commit_writers=2)) as runtime:
        assert runtime.ingestor.limits.writers == 2


async def test_work_arriving_while_the_writers_drain_is_refused_not_stranded(
    engine: AsyncEngine,
) -> None:
    ing = ingestor(engine)
    await ing.start()
    first = asyncio.create_task(ing.submit(sub(events("a"))))
    await asyncio.sleep(0)  # queued
    stopping = asyncio.create_task(ing.stop())
    await asyncio.sleep(0)  # draining: the stop marks are behind "a"
    with pytest.raises(StorageUnavailable, match="shutting down"):
        await asyncio.wait_for(ing.submit(sub(events("b"))), 5)
    await stopping
    assert [o.status for o in (await first)] == [A]
    assert await stored_ids(engine) == ["a"]


async def test_a_stored_key_in_a_group_leaves_out_its_job_alone(engine: AsyncEngine) -> None:
    # On SQLite a group whose keys are all new is first tried in one statement for the keys: a
    # stored key among them rolls that back, and the group is committed a key at a time.
    store = IdempotencyStore(engine, retention_s=3600, lock_timeout_s=3600)
    groups: list[int] = []
    committer = GroupCommitter(
        EventStore(engine),
        store,
        WriterLimits(max_delay_s=0.05),
        on_commit=lambda jobs, _n, _s: groups.append(jobs),
    )
    request = {"endpoint": "grpc SubmitBatch", "fingerprint": "f"}
    await committer.start()
    try:
        stored = Job(rows=[row(P, "old")], size=1, claim=store.new_key(P, "old", **request))
        assert await committer.commit(stored) is not None
        again = Job(rows=[row(P, "again")], size=1, claim=store.new_key(P, "old", **request))
        fresh = Job(rows=[row(P, "new")], size=1, claim=store.new_key(P, "new", **request))
        plain = Job(rows=[row(P, "plain")], size=1)
        answers = await asyncio.gather(*(committer.commit(j) for j in (again, fresh, plain)))
    finally:
        await committer.stop()
    assert groups == [1, 3]  # the three in one group
    assert [a is not None and a.accepted for a in answers] == [False, 1, 1]
    assert sorted(await stored_ids(engine)) == ["new", "old", "plain"]
    replay = await store.lookup(P, "new")
    assert replay is not None and replay.result == answers[1].encode()  # type: ignore[union-attr]
