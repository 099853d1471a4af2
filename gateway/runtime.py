"""The gateway's shared objects, opened and closed together: engine, stores, authenticator,
ingestor (with its writer task) and the adapter registry. Both fronts (HTTP, gRPC) receive one
``Runtime``; nothing is a module-level singleton.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters import default_registry
from adapters.registry import Registry
from gateway.auth import Authenticator
from gateway.commit import WriterLimits
from gateway.config import Settings
from gateway.failures import Refusals
from gateway.health import Health
from gateway.ingest import Ingestor
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.retention import Retention
from gateway.storage.checkpoint import WalCheckpointer
from gateway.storage.engine import create_engine, is_sqlite, sqlite_file
from gateway.storage.events import EventStore
from gateway.storage.failed import FailedEventStore
from gateway.storage.idempotency import IdempotencyStore
from gateway.storage.tenants import TenantStore


@dataclass(frozen=True, kw_only=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    tenants: TenantStore
    auth: Authenticator
    idempotency: IdempotencyStore
    events: EventStore
    ingestor: Ingestor
    registry: Registry
    # Per-key token buckets: this worker's share of each key's rate limit.
    limiter: RateLimiter
    # Prometheus families (GET /metrics) and readiness (GET /readyz, gRPC health).
    metrics: Metrics
    health: Health


# Where the aiohttp application keeps its runtime.
RUNTIME = web.AppKey("runtime", Runtime)
# Group commits in flight at once on PostgreSQL when ``commit_writers`` is 0 (SQLite takes one:
# it has a single writer). ``eventgw bench`` gRPC ingest on a 2-core machine: 35-39k events/s
# with one, 50-62k with two to four.
POSTGRES_WRITERS = 4


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, registry: Registry | None = None
) -> AsyncIterator[Runtime]:
    engine = create_engine(settings)
    tenants = TenantStore(engine)
    events = EventStore(engine)
    idempotency = IdempotencyStore(
        engine,
        retention_s=settings.idempotency_retention_seconds,
        lock_timeout_s=settings.idempotency_lock_timeout_seconds,
    )
    metrics = Metrics(multiprocess_dir=settings.prometheus_multiproc_dir)

    def on_commit(requests: int, n: int, seconds: float) -> None:
        metrics.observe_commit(requests, n, seconds, queued=ingestor.queued_events)

    refusals = Refusals(
        FailedEventStore(engine, cap_per_project=settings.failed_events_per_project),
        retention_seconds=settings.failed_event_retention_seconds,
        on_refused=metrics.observe_refused,
    )
    ingestor = Ingestor(
        events,
        idempotency,
        WriterLimits(
            max_events=settings.commit_max_events,
            max_delay_s=settings.commit_max_delay_ms / 1000,
            queue_max_events=settings.queue_max_events,
            queue_wait_s=settings.queue_wait_seconds,
            writers=settings.commit_writers or (1 if is_sqlite(engine) else POSTGRES_WRITERS),
        ),
        on_commit=on_commit,
        max_event_bytes=settings.max_event_bytes,
        refusals=refusals,
    )
    database_file = sqlite_file(engine)
    checkpointer = None
    if database_file is not None:
        checkpointer = WalCheckpointer(database_file, synchronous=settings.sqlite_synchronous)
    await ingestor.start()
    await refusals.start()
    retention = Retention(
        engine,
        idempotency,
        event_retention_seconds=settings.event_retention_seconds,
        interval_s=settings.retention_interval_seconds,
    )
    retention.start()
    if checkpointer is not None:
        checkpointer.start()
    try:
        yield Runtime(
            settings=settings,
            engine=engine,
            tenants=tenants,
            auth=Authenticator(tenants, ttl=settings.auth_cache_seconds),
            idempotency=idempotency,
            events=events,
            ingestor=ingestor,
            registry=registry or default_registry(),
            limiter=RateLimiter(workers=settings.workers),
            metrics=metrics,
            health=Health(
                engine,
                commit_failures=lambda: ingestor.commit_failures,
                failure_limit=settings.readiness_commit_failures,
                retry_seconds=settings.readiness_retry_seconds,
                database_file=database_file,
                min_free_bytes=settings.sqlite_min_free_bytes,
            ),
        )
    finally:
        await retention.stop()
        await ingestor.stop()
        await refusals.stop()
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)
        await engine.dispose()
