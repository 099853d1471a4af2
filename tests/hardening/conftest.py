"""Fixtures of the hardening tests: a real ``eventgw serve`` process (``GatewayProcess``) over a
provisioned SQLite file, with keys for every dialect, and helpers to send each dialect a valid
event or a body of our choosing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from adapters import default_registry
from gateway.config import Settings
from gateway.storage.engine import create_engine
from gateway.storage.tenants import TenantStore
from tests.harness import GatewayProcess, provision, stored_events

# Every REST route the gateway serves, from the registry itself.
ROUTES: list[tuple[str, str, str]] = sorted(
    (adapter.name, method, path)
    for (method, path), (adapter, _) in default_registry().routes.items()
)
ROUTE_IDS = [f"{name}:{method} {path}" for name, method, path in ROUTES]
# The routes that take a body (a GET, such as Segment's browser settings, reads none).
BODY_ROUTES = [route for route in ROUTES if route[1] == "POST"]
BODY_ROUTE_IDS = [f"{name}:{method} {path}" for name, method, path in BODY_ROUTES]


@dataclass
class Server:
    """A gateway process with one project and one unlimited key."""

    proc: GatewayProcess
    database_url: str
    project_id: str
    key: str
    key_id: str

    @property
    def http_url(self) -> str:
        return self.proc.http_url

    @property
    def grpc_target(self) -> str:
        return self.proc.grpc_target

    def alive(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None

    async def stored_ids(self, project_id: str | None = None) -> set[str]:
        events = await stored_events(self.database_url, project_id or self.project_id)
        return {e.id for e in events}


async def create_key(
    database_url: str,
    project_id: str | None = None,
    *,
    rate_limit: str | None = None,
    allowed_origins: tuple[str, ...] = (),
) -> tuple[str, str, str]:
    """A key (in a new project unless ``project_id``): (project id, secret, key id)."""
    engine = create_engine(Settings(database_url=database_url))
    try:
        tenants = TenantStore(engine)
        if project_id is None:
            project = await tenants.create_project("hardening", allowed_origins=allowed_origins)
            project_id = project.id
        record, secret = await tenants.create_key(project_id, rate_limit=rate_limit)
        return project_id, secret, record.id
    finally:
        await engine.dispose()


def start_server(
    database_url: str, *, env: dict[str, str] | None = None, project_id: str | None = None
) -> Server:
    pid, key, key_id = asyncio.run(provision(database_url, project_id=project_id))
    proc = GatewayProcess(database_url, env={"EVENTGW_LOG_LEVEL": "warning", **(env or {})})
    proc.start()
    return Server(proc=proc, database_url=database_url, project_id=pid, key=key, key_id=key_id)


def stop_server(server: Server) -> None:
    if server.alive():
        server.proc.terminate()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path: Path = tmp_path_factory.mktemp("hardening") / "eventgw.db"
    srv = start_server(f"sqlite:///{path}")
    try:
        yield srv
    finally:
        stop_server(srv)


# -- requests -------------------------------------------------------------------------------------


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def valid_request(
    dialect: str, key: str, project_id: str, tag: str | None = None
) -> tuple[str, dict[str, str], dict[str, str], bytes, str]:
    """One valid single-event request for ``dialect`` keyed by ``key``:
    (path, query, headers, body, event id or "" when the gateway generates it)."""
    tag = tag or uuid.uuid4().hex
    headers = auth_headers(key)
    body: dict[str, Any]
    if dialect == "databuddy":
        body = {"name": "hardening", "eventId": tag, "properties": {"n": 1}}
        return "/track", {}, headers, orjson.dumps(body), tag
    if dialect == "ours":
        body = {"token": key, "event": "hardening", "distinctId": tag}
        return "/api/v1/track", {}, {"Content-Type": "application/json"}, orjson.dumps(body), tag
    if dialect == "appizer":
        body = {"event_name": "hardening", "user_id": tag}
        headers["Idempotency-Key"] = tag
        return "/v1/events", {}, headers, orjson.dumps(body), ""
    if dialect == "vibefollow":
        body = {"external_user_id": tag, "name": "hardening"}
        headers["Idempotency-Key"] = tag
        return "/api/v1/events", {}, headers, orjson.dumps(body), ""
    raise ValueError(dialect)


DIALECTS = ("databuddy", "ours", "appizer", "vibefollow")


async def post_valid(
    session: aiohttp.ClientSession, server_url: str, dialect: str, key: str, project_id: str
) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
    path, query, headers, body, _ = valid_request(dialect, key, project_id)
    async with session.post(server_url + path, params=query, headers=headers, data=body) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers
