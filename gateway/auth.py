"""Resolving a request's credential to a ``Principal`` (project, scopes, limits).

API keys are looked up by their SHA-256 and compared in constant time; a public project id
(Databuddy's website id) resolves to its project with the tracking scope only. Answers are cached
for ``ttl`` seconds (default 1 s), which bounds how long a revoked key keeps working on any
process.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.errors import InvalidCredential, UnknownProject
from gateway.model import ApiKey, Credential, ProjectRef
from gateway.storage.engine import storage_errors
from gateway.storage.tenants import TRACK_SCOPE, Project, TenantStore, hash_key

__all__ = ["TRACK_SCOPE", "Authenticator", "Principal"]

log = logging.getLogger(__name__)

_MAX_CACHED = 50_000
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Principal:
    project_id: str
    key_id: str | None
    scopes: frozenset[str]
    rate_limit: str | None = None
    allowed_origins: tuple[str, ...] = ()


class Authenticator:
    def __init__(
        self,
        tenants: TenantStore,
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenants = tenants
        self.ttl = ttl
        self.clock = clock
        self._keys: dict[str, tuple[float, Principal | str]] = {}
        self._projects: dict[str, tuple[float, Project | None]] = {}
        self._lookups: dict[str, asyncio.Future[Any]] = {}

    async def authenticate(self, credential: Credential) -> Principal:
        if isinstance(credential, ApiKey):
            return await self._by_key(credential.secret)
        return await self._by_project(credential)

    async def _by_key(self, secret: str) -> Principal:
        digest = hash_key(secret)
        now = self.clock()
        cached = self._keys.get(digest)
        if cached is None or cached[0] <= now:
            answer = await self._once(f"key:{digest}", lambda: self._resolve_key(digest))
            cached = (now + self.ttl, answer)
            self._remember(self._keys, digest, cached)
        answer = cached[1]
        if isinstance(answer, str):
            raise InvalidCredential(answer)
        return answer

    async def _resolve_key(self, digest: str) -> Principal | str:
        record = await _storage(self.tenants.find_key(digest))
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return "Invalid API key"
        if record.revoked_at is not None:
            return "API key has been revoked"
        project = await self._project(record.project_id)
        if project is None or not project.active:
            return "Invalid API key"
        return Principal(
            project_id=project.id,
            key_id=record.id,
            scopes=frozenset(record.scopes),
            rate_limit=record.rate_limit,
            allowed_origins=project.allowed_origins,
        )

    async def _by_project(self, ref: ProjectRef) -> Principal:
        try:
            project_id = str(uuid.UUID(ref.project_id))
        except ValueError:
            raise UnknownProject("Invalid or inactive client ID") from None
        project = await self._project(project_id)
        if project is None or not project.active:
            raise UnknownProject("Invalid or inactive client ID")
        return Principal(
            project_id=project.id,
            key_id=None,
            scopes=frozenset({TRACK_SCOPE}),
            allowed_origins=project.allowed_origins,
        )

    async def _project(self, project_id: str) -> Project | None:
        now = self.clock()
        cached = self._projects.get(project_id)
        if cached is None or cached[0] <= now:
            project = await self._once(
                f"project:{project_id}", lambda: _storage(self.tenants.get_project(project_id))
            )
            cached = (now + self.ttl, project)
            self._remember(self._projects, project_id, cached)
        return cached[1]

    async def _once(self, key: str, lookup: Callable[[], Awaitable[T]]) -> T:
        """One lookup per key at a time: the requests that miss the cache together (all of them,
        under load, when an answer expires) share one database query."""
        pending = self._lookups.get(key)
        if pending is None:
            pending = asyncio.ensure_future(lookup())
            self._lookups[key] = pending
            pending.add_done_callback(lambda _: self._lookups.pop(key, None))
        answer: T = await asyncio.shield(pending)
        return answer

    @staticmethod
    def _remember(cache: dict[str, T], key: str, value: T) -> None:
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[key] = value


async def _storage(lookup: Awaitable[T]) -> T:
    """A credential lookup, retryable when the database cannot answer."""
    with storage_errors("credential lookup"):
        return await lookup
