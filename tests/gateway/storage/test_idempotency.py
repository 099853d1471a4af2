"""Idempotency keys on both backends: claim, replay, reuse with another request, in flight,
take-over of a stale lock, expiry and purge — decided in the database, so that concurrent claims
of one key (as from several gateway processes) let exactly one request run."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.errors import IdempotencyInFlight, IdempotencyKeyReused
from gateway.storage.engine import create_engine
from gateway.storage.idempotency import Claim, IdempotencyStore, Replay
from gateway.storage.schema import idempotency_keys

P = str(uuid.uuid4())
EP = "POST /batch"
RESULT = b'{"ids":["a"]}\n\x00'  # stored as given: the pipeline's encoding is its own


def store(
    engine: AsyncEngine, *, retention_s: float = 3600, lock_s: float = 30
) -> IdempotencyStore:
    return IdempotencyStore(engine, retention_s=retention_s, lock_timeout_s=lock_s)


async def claim(keys: IdempotencyStore, key: str = "k", fp: str = "f1") -> Claim | Replay:
    return await keys.claim(P, key, endpoint=EP, fingerprint=fp)


async def complete(keys: IdempotencyStore, c: Claim | Replay) -> None:
    assert isinstance(c, Claim)
    async with keys.engine.begin() as conn:
        await keys.complete(conn, [(c, RESULT)])


async def test_claim_then_replay_byte_for_byte(engine: AsyncEngine) -> None:
    keys = store(engine)
    first = await claim(keys)
    assert isinstance(first, Claim) and (first.project_id, first.key) == (P, "k")
    await complete(keys, first)
    replay = await claim(keys)
    assert replay == Replay(endpoint=EP, result=RESULT)
    assert await keys.lookup(P, "k") == replay
    assert await keys.lookup(P, "other") is None
    assert isinstance(
        await keys.claim(str(uuid.uuid4()), "k", endpoint=EP, fingerprint="f1"), Claim
    )


async def test_same_key_other_request_is_refused(engine: AsyncEngine) -> None:
    keys = store(engine)
    await complete(keys, await claim(keys))
    with pytest.raises(IdempotencyKeyReused):
        await claim(keys, fp="f2")
    with pytest.raises(IdempotencyKeyReused):
        await keys.claim(P, "k", endpoint="POST /other", fingerprint="f1")


async def test_in_flight_key_is_refused_then_released(engine: AsyncEngine) -> None:
    keys = store(engine)
    first = await claim(keys)
    with pytest.raises(IdempotencyInFlight) as refused:
        await claim(keys)
    assert refused.value.retry_after is not None and refused.value.retry_after >= 1
    with pytest.raises(IdempotencyKeyReused):
        await claim(keys, fp="f2")  # another request under the key: refused even while in flight
    assert isinstance(first, Claim)
    await keys.release(first)
    assert isinstance(await claim(keys, fp="f2"), Claim)  # released: a retry runs afresh


async def test_stale_lock_is_taken_over_and_the_old_holder_cannot_complete(
    engine: AsyncEngine,
) -> None:
    keys = store(engine, lock_s=0)  # every lock is stale at once
    first = await claim(keys)
    second = await claim(keys)
    assert isinstance(first, Claim) and isinstance(second, Claim)
    assert first.token != second.token
    await complete(keys, first)  # the old holder: its token no longer matches
    async with engine.connect() as conn:
        state = (await conn.execute(select(idempotency_keys.c.state))).scalar_one()
    assert state == "in_flight"
    await complete(keys, second)
    assert isinstance(await claim(keys), Replay)


async def test_expired_key_is_new_again_and_purged(engine: AsyncEngine) -> None:
    keys = store(engine)
    await complete(keys, await claim(keys, key="old"))
    await complete(keys, await claim(keys, key="kept"))
    async with engine.begin() as conn:
        await conn.execute(
            update(idempotency_keys).where(idempotency_keys.c.key == "old").values(expires_at=0)
        )
    assert await keys.lookup(P, "old") is None
    assert await keys.purge() == 1
    assert await keys.purge() == 0
    assert isinstance(await claim(keys, key="old", fp="another"), Claim)
    assert isinstance(await claim(keys, key="kept"), Replay)


async def test_expired_key_is_claimed_afresh_without_purge(engine: AsyncEngine) -> None:
    keys = store(engine, retention_s=0)  # expires as soon as it is stored
    await complete(keys, await claim(keys))
    assert isinstance(await claim(keys, fp="f2"), Claim)


async def test_concurrent_claims_let_exactly_one_run(database_url: str) -> None:
    """Eight claimants on eight engines (as from several processes): one Claim, the others are
    told the key is in flight; once completed, every claimant gets the replay."""
    engines = [create_engine(Settings(database_url=database_url)) for _ in range(8)]
    try:
        outcomes = await asyncio.gather(*(claim(store(e)) for e in engines), return_exceptions=True)
        claims = [o for o in outcomes if isinstance(o, Claim)]
        assert len(claims) == 1
        assert all(isinstance(o, IdempotencyInFlight) for o in outcomes if o is not claims[0])
        await complete(store(engines[0]), claims[0])
        replays = await asyncio.gather(*(claim(store(e)) for e in engines))
        assert all(r == Replay(endpoint=EP, result=RESULT) for r in replays)
    finally:
        for e in engines:
            await e.dispose()
