"""Resolving a request's credential to a ``Principal`` (project, scopes, limits).

API keys are looked up by their SHA-256 and compared in constant time; a public project id
(Databuddy's website id) resolves to its project with the tracking scope only. Answers are cached
for ``ttl`` seconds (default 1 s), which bounds how long a revoked key keeps working on any
process.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from adapters.base import ApiKey, Credential, ProjectRef
from gateway.errors import InvalidCredential, UnknownProject
from gateway.storage.tenants import TRACK_SCOPE, Project, TenantStore, hash_key

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

    async def authenticate(self, credential: Credential) -> Principal:
        if isinstance(credential, ApiKey):
            return await self._by_key(credential.secret)
        return await self._by_project(credential)

    async def _by_key(self, secret: str) -> Principal:
        digest = hash_key(secret)
        now = self.clock()
        cached = self._keys.get(digest)
        if cached is None or cached[0] <= now:
            cached = (now + self.ttl, await self._resolve_key(digest))
            self._remember(self._keys, digest, cached)
        answer = cached[1]
        if isinstance(answer, str):
            raise InvalidCredential(answer)
        return answer

    async def _resolve_key(self, digest: str) -> Principal | str:
        record = await self.tenants.find_key(digest)
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
            cached = (now + self.ttl, await self.tenants.get_project(project_id))
            self._remember(self._projects, project_id, cached)
        return cached[1]

    @staticmethod
    def _remember(cache: dict[str, T], key: str, value: T) -> None:
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[key] = value
