"""Idempotency keys with their stored responses.

A request's key is stored by the transaction that stores its events (the group commit's):
``new_key`` describes it, ``insert_new`` inserts a group's new keys there (one that exists is not,
and its request's events are left out of the transaction), and ``complete`` stores each
request's result with its key before the commit; on SQLite, ``insert_completed_sqlite`` inserts
a group's keys with their results at once, after the events, when none of them exists. A key is
never seen without its events and result, and a request cut off before its commit leaves nothing
behind. A key that existed is decided afterwards by ``existing``, which ``claim`` (a key's lock
taken in a transaction of its own) also uses:

- completed, same fingerprint: ``Replay`` of the stored response;
- different fingerprint: ``IdempotencyKeyReused``;
- in flight: ``IdempotencyInFlight``, unless its lock is older than the timeout: then the lock is
  taken over (the first holder died);
- expired (past retention): treated as new.

A completed key holds the request's result as the pipeline encoded it (``result``); keys
completed before migration 0002 hold the rendered response instead (status, headers and body),
which is replayed as it is. Keys in flight are those ``claim``ed, by a gateway that stored keys in
a transaction of their own (before this one) or by a takeover: they are completed the same way,
or released when their request failed in a way worth retrying.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.errors import IdempotencyInFlight, IdempotencyKeyReused
from gateway.storage.engine import now_us
from gateway.storage.schema import idempotency_keys as keys
from gateway.storage.writer import SqliteRowsInsert, SqliteSql


@dataclass(frozen=True, kw_only=True)
class StoredResponse:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class Claim:
    project_id: str
    key: str
    token: str


@dataclass(frozen=True, kw_only=True)
class NewKey(Claim):
    """A key not stored yet: inserted, in flight, by the transaction that stores its events."""

    endpoint: str
    fingerprint: str
    created_at: int
    expires_at: int

    def row(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "key": self.key,
            "endpoint": self.endpoint,
            "fingerprint": self.fingerprint,
            "state": "in_flight",
            "token": self.token,
            "created_at": self.created_at,
            "locked_at": self.created_at,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, kw_only=True)
class Replay:
    """A completed key: its ``result`` (bytes the pipeline encoded), or for a key completed
    before results were stored whole, its rendered ``response``."""

    endpoint: str
    result: bytes | None = None
    response: StoredResponse | None = None

    @classmethod
    def of(cls, row: Any) -> Replay:
        if row.result is not None:
            return cls(endpoint=row.endpoint, result=row.result)
        response = StoredResponse(
            status=row.status_code,
            body=row.response_body,
            headers=orjson.loads(row.response_headers or "{}"),
        )
        return cls(endpoint=row.endpoint, response=response)


# A claim's completion: its result stored, if the claim still holds the key's lock.
_COMPLETE = (
    update(keys)
    .where(
        (keys.c.project_id == bindparam("claim_project_id"))
        & (keys.c.key == bindparam("claim_key"))
        & (keys.c.token == bindparam("claim_token"))
    )
    .values(state="completed", result=bindparam("claim_result"))
)
_COMPLETE_SQLITE = SqliteSql(_COMPLETE)
# A new key, unless the key exists (its request is then decided by ``existing``).
_NEW_COLUMNS = (
    "project_id", "key", "endpoint", "fingerprint", "state", "token", "created_at", "locked_at",
    "expires_at",
)  # fmt: skip
_INSERT_NEW_SQLITE = SqliteSql(
    sqlite_insert(keys)
    .values({name: bindparam(name) for name in _NEW_COLUMNS})
    .on_conflict_do_nothing()
)


# New keys stored completed, with their results, in one statement: ``insert_completed_sqlite``.
_COMPLETED_ROWS = 500  # keys per statement: 5,000 parameters, under SQLite's 32,766
_INSERT_COMPLETED_SQLITE = SqliteRowsInsert(keys, (*_NEW_COLUMNS, "result"))


def _completion(claim: Claim, result: bytes) -> dict[str, Any]:
    return {
        "claim_project_id": claim.project_id,
        "claim_key": claim.key,
        "claim_token": claim.token,
        "claim_result": result,
    }


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine, *, retention_s: float, lock_timeout_s: float) -> None:
        self.engine = engine
        self.retention_us = int(retention_s * 1_000_000)
        self.lock_timeout_us = int(lock_timeout_s * 1_000_000)

    def new_key(self, project_id: str, key: str, *, endpoint: str, fingerprint: str) -> NewKey:
        now = now_us()
        return NewKey(
            project_id=project_id,
            key=key,
            token=uuid.uuid4().hex,
            endpoint=endpoint,
            fingerprint=fingerprint,
            created_at=now,
            expires_at=now + self.retention_us,
        )

    async def insert_new(self, conn: AsyncConnection, news: Sequence[NewKey]) -> set[str]:
        """Insert ``news`` in the caller's transaction, in one statement, in the order given
        (sorted, two transactions never wait for each other's); the tokens of those inserted
        (a key that exists is not). On PostgreSQL a key another transaction is inserting waits
        for that transaction's end."""
        insert_ = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
        statement = (
            insert_(keys)
            .values([new.row() for new in news])
            .on_conflict_do_nothing()
            .returning(keys.c.token)
        )
        return set((await conn.execute(statement)).scalars())

    @staticmethod
    def insert_new_sqlite(db: sqlite3.Connection, new: NewKey) -> bool:
        """``insert_new`` of one key on the SQLite writer's own connection, inside its
        transaction; False when the key exists."""
        cursor = db.execute(_INSERT_NEW_SQLITE.sql, _INSERT_NEW_SQLITE.params(new.row()))
        return cursor.rowcount == 1

    @staticmethod
    def insert_completed_sqlite(
        db: sqlite3.Connection, completions: Sequence[tuple[NewKey, bytes]]
    ) -> bool:
        """New keys inserted completed, each with its result, inside the caller's transaction on
        the SQLite writer's connection, in one statement per 500 (where ``insert_new_sqlite``
        and ``complete_sqlite`` take two per key); False when some key existed, which then
        stays as it was: the caller rolls back."""
        stored = 0
        for start in range(0, len(completions), _COMPLETED_ROWS):
            page = completions[start : start + _COMPLETED_ROWS]
            params: list[Any] = []
            for new, result in page:
                row = new.row() | {"state": "completed", "result": result}
                params += map(row.__getitem__, _INSERT_COMPLETED_SQLITE.columns)
            cursor = db.execute(_INSERT_COMPLETED_SQLITE.sql(len(page)), params)
            stored += max(cursor.rowcount, 0)
        return stored == len(completions)

    async def claim(
        self, project_id: str, key: str, *, endpoint: str, fingerprint: str
    ) -> Claim | Replay:
        """Take ``key``'s lock in a transaction of its own (``Claim``), or decide the request
        by the key's stored state."""
        for _ in range(3):
            now, token = now_us(), uuid.uuid4().hex
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        insert(keys).values(
                            project_id=project_id,
                            key=key,
                            endpoint=endpoint,
                            fingerprint=fingerprint,
                            state="in_flight",
                            token=token,
                            created_at=now,
                            locked_at=now,
                            expires_at=now + self.retention_us,
                        )
                    )
                return Claim(project_id=project_id, key=key, token=token)
            except IntegrityError:
                pass
            outcome = await self.existing(
                project_id, key, endpoint=endpoint, fingerprint=fingerprint
            )
            if outcome is not None:
                return outcome
        raise IdempotencyInFlight("Idempotency key is being processed", retry_after=1)

    async def existing(
        self,
        project_id: str,
        key: str,
        *,
        endpoint: str,
        fingerprint: str,
        earlier_fingerprint: Callable[[], str] | None = None,
    ) -> Claim | Replay | None:
        """Decide on a key that exists; None: it vanished or expired, so try to insert again.
        ``earlier_fingerprint``: the request's fingerprint as an earlier version of its front
        made it, for a key stored by that version."""
        where = (keys.c.project_id == project_id) & (keys.c.key == key)
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(keys).where(where))).one_or_none()
            if row is None:
                return None
            now = now_us()
            if row.expires_at <= now:
                await conn.execute(delete(keys).where(where & (keys.c.token == row.token)))
                return None
            same = row.fingerprint == fingerprint or (
                earlier_fingerprint is not None
                and row.fingerprint[:2] != fingerprint[:2]
                and row.fingerprint == earlier_fingerprint()
            )
            if not same or row.endpoint != endpoint:
                raise IdempotencyKeyReused(
                    "Idempotency-Key was already used with a different request"
                )
            if row.state == "completed":
                return Replay.of(row)
            age = now - row.locked_at
            if age < self.lock_timeout_us:
                raise IdempotencyInFlight(
                    "A request with this Idempotency-Key is still in progress",
                    retry_after=max(1.0, (self.lock_timeout_us - age) / 1_000_000),
                )
            token = uuid.uuid4().hex
            taken = await conn.execute(
                update(keys)
                .where(where & (keys.c.token == row.token))
                .values(token=token, locked_at=now)
            )
            if taken.rowcount == 1:
                return Claim(project_id=project_id, key=key, token=token)
            raise IdempotencyInFlight("Idempotency-Key lock was just taken over", retry_after=1)

    async def complete(
        self, conn: AsyncConnection, completions: Sequence[tuple[Claim, bytes]]
    ) -> None:
        """Store each claim's final result, inside the caller's transaction (one
        ``executemany``)."""
        await conn.execute(_COMPLETE, [_completion(claim, result) for claim, result in completions])

    @staticmethod
    def complete_sqlite(db: sqlite3.Connection, claim: Claim, result: bytes) -> None:
        """``complete`` on the SQLite writer's own connection (``gateway.storage.writer``),
        inside its transaction."""
        db.execute(_COMPLETE_SQLITE.sql, _COMPLETE_SQLITE.params(_completion(claim, result)))

    async def release(self, claim: Claim) -> None:
        """Forget an in-flight key whose request failed retryably, so a retry runs afresh."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(keys).where(
                    (keys.c.project_id == claim.project_id)
                    & (keys.c.key == claim.key)
                    & (keys.c.token == claim.token)
                )
            )

    async def lookup(self, project_id: str, key: str) -> Replay | None:
        """The completed response stored under ``key``, if any (gRPC GetSubmission)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(keys).where(
                        (keys.c.project_id == project_id)
                        & (keys.c.key == key)
                        & (keys.c.state == "completed")
                        & (keys.c.expires_at > now_us())
                    )
                )
            ).one_or_none()
        return None if row is None else Replay.of(row)

    async def purge(self) -> int:
        """Delete expired keys; the number deleted."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(keys).where(keys.c.expires_at <= now_us()))
        return int(result.rowcount)
