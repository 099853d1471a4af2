"""Operational endpoints: ``GET /healthz`` (the process serves) and ``GET /readyz`` (the database
answers and its schema is at the migrations' head)."""

from __future__ import annotations

from aiohttp import web

from gateway import migrate
from gateway.runtime import RUNTIME


def routes() -> list[web.RouteDef]:
    head = migrate.head_revision()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        try:
            revision = await migrate.current_revision(request.app[RUNTIME].engine)
        except Exception as exc:
            return web.json_response(
                {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"},
                status=503,
            )
        if revision != head:
            return web.json_response(
                {"status": "unavailable", "database": f"schema at {revision}, head is {head}"},
                status=503,
            )
        return web.json_response({"status": "ok", "database": "ok", "schema": revision})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
