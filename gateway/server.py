"""Running the gateway: one event loop serving HTTP (aiohttp), gRPC (grpc.aio) and the operations
listener until SIGTERM or SIGINT, then a graceful stop: listeners close, in-flight requests
finish, the writer commits what it holds, the process exits 0. SIGHUP reloads the TLS
certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.app import GRPC_PORT, create_app, create_ops_app
from gateway.config import Settings
from gateway.http.guard import GuardedSite, Limits
from gateway.tls import Certificates

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 15.0
# The writer's database calls (on its SQLite connection's own thread) take the GIL back from the
# event loop after every statement; at CPython's default 5 ms switch interval each take can wait
# that long behind a busy loop, which stretches every group commit. `eventgw bench`: 1 ms gives
# ~25% more gRPC ingest and shorter commits; below it, no further gain.
SWITCH_INTERVAL_SECONDS = 0.001
GC_YOUNG_THRESHOLD = 20_000  # see ``tune_garbage_collector``


@dataclass(frozen=True, kw_only=True)
class Bound:
    """Where a started gateway listens (ports resolved when 0 was asked for)."""

    http_host: str
    http_port: int
    grpc_host: str
    grpc_port: int
    ops_host: str = ""
    ops_port: int = 0


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Bound], None] | None = None,
    handle_signals: bool = True,
) -> None:
    stop = stop or asyncio.Event()
    certificates = Certificates(settings)
    app = create_app(settings, certificates=certificates)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()
    ops_runner = web.AppRunner(create_ops_app(app), handle_signals=False, access_log=None)
    try:
        await ops_runner.setup()
        limits = Limits(
            header_timeout=settings.http_header_timeout_seconds,
            max_connections=settings.max_connections,
        )
        site = GuardedSite(
            runner,
            settings.http_host,
            settings.http_port,
            limits=limits,
            ssl_context=certificates.http,
        )
        await site.start()
        # The same guard on the ops listener, with a cap of its own: scrapers cannot starve it.
        ops_limits = Limits(
            header_timeout=settings.http_header_timeout_seconds,
            max_connections=settings.max_connections,
        )
        ops_site = GuardedSite(ops_runner, settings.ops_host, settings.ops_port, limits=ops_limits)
        await ops_site.start()
        bound = Bound(
            http_host=settings.http_host,
            http_port=site.port,
            grpc_host=settings.grpc_host,
            grpc_port=app[GRPC_PORT],
            ops_host=settings.ops_host,
            ops_port=ops_site.port,
        )
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGHUP, certificates.reload)
        log.info(
            "serving HTTP%s on %s:%d, gRPC%s on %s:%d, operations on %s:%d",
            "S" if certificates.http else "",
            bound.http_host,
            bound.http_port,
            " over TLS" if certificates.grpc_tls else "",
            bound.grpc_host,
            bound.grpc_port,
            bound.ops_host,
            bound.ops_port,
        )
        if handle_signals:  # this run owns the process
            tune_garbage_collector()
        if on_ready is not None:
            on_ready(bound)
        await stop.wait()
        log.info("stopping: draining in-flight requests")
    finally:
        await ops_runner.cleanup()
        await runner.cleanup()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


def tune_garbage_collector() -> None:
    """Tune the cyclic garbage collector for serving (``eventgw bench`` measured both):

    - Freeze what startup allocated (modules, descriptors, the app and its pools; ~100k objects)
      out of its reach. Each full collection would otherwise traverse all of it again, pausing
      the event loop ~60 ms every few seconds under load, which every request in flight waits
      out. Frozen objects are still freed by reference counting; only cycles among them stay.
    - Collect the youngest generation after ``GC_YOUNG_THRESHOLD`` net new objects, not 700:
      the requests in flight hold thousands, so at 700 it ran ~40 times a second, 0.5 ms each,
      to find nearly nothing (reference counting frees a request's objects); 2-8% less CPU per
      event or request.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run_forever(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed, else on asyncio's default loop, with a
    short GIL switch interval (``SWITCH_INTERVAL_SECONDS``)."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
