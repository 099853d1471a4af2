"""Operational endpoints: ``GET /healthz`` (the process serves), ``GET /readyz`` (the database
answers, its schema is at the migrations' head and writes succeed; see ``gateway.health``) and
``GET /metrics`` (Prometheus text format; see ``gateway.metrics``).

The operations listener (``--ops``) serves all three (``routes``); the public listener only
``/healthz``, for load balancers (``public_routes``): project ids and traffic stay off it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.http.middleware import request_info
from gateway.metrics import CONTENT_TYPE
from gateway.runtime import RUNTIME

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def public_routes() -> list[web.RouteDef]:
    return [web.get("/healthz", _named("healthz", _healthz))]


def routes() -> list[web.RouteDef]:
    async def readyz(request: web.Request) -> web.Response:
        readiness = await request.app[RUNTIME].health.check()
        return web.json_response(readiness.document(), status=200 if readiness.ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        runtime.metrics.queue.set(runtime.ingestor.queued_events)
        body = runtime.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return [
        *public_routes(),
        web.get("/readyz", _named("readyz", readyz)),
        web.get("/metrics", _named("metrics", metrics)),
    ]


def _named(endpoint: str, handler: Handler) -> Handler:
    """``handler``, labelled ``dialect="ops"`` in the access log and the metrics."""

    async def labelled(request: web.Request) -> web.StreamResponse:
        info = request_info(request)
        info.dialect, info.endpoint = "ops", endpoint
        return await handler(request)

    return labelled
