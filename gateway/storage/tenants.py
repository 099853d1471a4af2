"""Projects (tenants) and their API keys.

Keys are random secrets shown once at creation; only their SHA-256 is stored (a fast hash is
right for high-entropy secrets, as for GitHub tokens), with a display prefix (``dbdy_``,
``sk_live_``: cosmetic, any key works on every dialect), scopes and an optional rate limit.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.engine import now_us
from gateway.storage.schema import api_keys, projects

TRACK_SCOPE = "track:events"
DEFAULT_PREFIX = "egw_"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Project:
    id: str
    name: str
    allowed_origins: tuple[str, ...]
    active: bool
    created_at: int


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    id: str
    project_id: str
    prefix: str
    hint: str
    scopes: tuple[str, ...]
    rate_limit: str | None
    created_at: int
    revoked_at: int | None
    key_hash: str = ""


class TenantStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_project(
        self, name: str, *, allowed_origins: Sequence[str] = (), project_id: str | None = None
    ) -> Project:
        project = Project(
            id=str(uuid.UUID(project_id)) if project_id else str(uuid.uuid4()),
            name=name,
            allowed_origins=tuple(allowed_origins),
            active=True,
            created_at=now_us(),
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(projects).values(
                    id=project.id,
                    name=name,
                    allowed_origins=orjson.dumps(list(allowed_origins)).decode(),
                    active=True,
                    created_at=project.created_at,
                )
            )
        return project

    async def list_projects(self) -> list[Project]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(projects).order_by(projects.c.created_at))
            return [_project(row) for row in rows]

    async def get_project(self, project_id: str) -> Project | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(projects).where(projects.c.id == project_id))
            ).one_or_none()
        return None if row is None else _project(row)

    async def create_key(
        self,
        project_id: str,
        *,
        scopes: Sequence[str] = (TRACK_SCOPE,),
        prefix: str = DEFAULT_PREFIX,
        rate_limit: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key for ``project_id``: its record and its secret (shown once, never stored)."""
        if await self.get_project(project_id) is None:
            raise LookupError(f"no project {project_id}")
        secret = prefix + secrets.token_urlsafe(32)
        record = KeyRecord(
            id=uuid.uuid4().hex[:16],
            project_id=project_id,
            prefix=prefix,
            hint=secret[-4:],
            scopes=tuple(scopes),
            rate_limit=rate_limit,
            created_at=now_us(),
            revoked_at=None,
            key_hash=hash_key(secret),
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=record.id,
                    project_id=project_id,
                    prefix=prefix,
                    key_hash=record.key_hash,
                    hint=record.hint,
                    scopes=orjson.dumps(list(scopes)).decode(),
                    rate_limit=rate_limit,
                    created_at=record.created_at,
                )
            )
        return record, secret

    async def list_keys(self, project_id: str) -> list[KeyRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(api_keys)
                .where(api_keys.c.project_id == project_id)
                .order_by(api_keys.c.created_at)
            )
            return [_key(row) for row in rows]

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))
            ).one_or_none()
        return None if row is None else _key(row)

    async def revoke_key(self, key_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where((api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now_us())
            )
        return bool(result.rowcount)

    async def set_rate_limit(self, key_id: str, rate_limit: str | None) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(rate_limit=rate_limit)
            )
        return bool(result.rowcount)


def _project(row: Row[Any]) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        allowed_origins=tuple(orjson.loads(row.allowed_origins)),
        active=bool(row.active),
        created_at=row.created_at,
    )


def _key(row: Row[Any]) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        project_id=row.project_id,
        prefix=row.prefix,
        hint=row.hint,
        scopes=tuple(orjson.loads(row.scopes)),
        rate_limit=row.rate_limit,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        key_hash=row.key_hash,
    )
