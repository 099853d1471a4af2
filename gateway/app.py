"""Wiring: the aiohttp application whose lifecycle also opens the runtime and the gRPC server.

Shared objects live on the app under typed ``web.AppKey``s and are opened and closed in paired
``cleanup_ctx`` generators, in order: runtime (database, writer) first, gRPC server second; on
shutdown the gRPC server drains first, then the writer commits what is queued, then the engine
closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from aiohttp import web

from adapters.registry import Registry
from gateway.config import Settings
from gateway.http import ops
from gateway.http.dialects import dispatch
from gateway.http.middleware import access_middleware
from gateway.rpc import start_grpc_server
from gateway.runtime import RUNTIME, open_runtime
from gateway.tls import Certificates

SETTINGS = web.AppKey("settings", Settings)
GRPC_SERVER = web.AppKey("grpc_server", grpc.aio.Server)
GRPC_PORT = web.AppKey("grpc_port", int)

GRPC_GRACE_SECONDS = 10.0
# After answering a request whose body was not read to its end (refused, or cut off by the body
# timeout), aiohttp reads and drops what still arrives for this long before closing.
LINGER_SECONDS = 2.0


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    grpc_enabled: bool = True,
    certificates: Certificates | None = None,
) -> web.Application:
    # Bodies are read and capped by the dialect handler itself (per-route limits). The access
    # middleware gives every request its id, its access-log line and its metrics.
    app = web.Application(
        client_max_size=settings.max_body_bytes + 1,
        middlewares=[access_middleware],
        # Bodies are decompressed by gateway.http.body (bounded, errors in the dialect envelope).
        handler_args={
            "auto_decompress": False,
            "keepalive_timeout": settings.http_keepalive_timeout_seconds,
            "lingering_time": LINGER_SECONDS,
        },
    )
    app[SETTINGS] = settings

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(settings, registry) as runtime:
            app[RUNTIME] = runtime
            yield

    async def grpc_ctx(app: web.Application) -> AsyncIterator[None]:
        if not grpc_enabled:
            yield
            return
        credentials = None if certificates is None else certificates.grpc_credentials()
        server, port = await start_grpc_server(
            app[RUNTIME], settings.grpc_host, settings.grpc_port, credentials
        )
        app[GRPC_SERVER] = server
        app[GRPC_PORT] = port
        yield
        await server.stop(GRPC_GRACE_SECONDS)

    app.router.add_routes(ops.public_routes())
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app.cleanup_ctx.append(runtime_ctx)
    app.cleanup_ctx.append(grpc_ctx)
    return app


def create_ops_app(public: web.Application) -> web.Application:
    """The operations listener's application: ``/metrics``, ``/readyz``, ``/healthz`` over the
    runtime ``public`` opened (set up ``public`` first)."""
    settings = public[SETTINGS]
    app = web.Application(
        middlewares=[access_middleware],
        handler_args={"keepalive_timeout": settings.http_keepalive_timeout_seconds},
    )
    app[RUNTIME] = public[RUNTIME]
    app.router.add_routes(ops.routes())
    return app
