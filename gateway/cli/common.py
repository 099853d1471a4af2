"""What every ``eventgw`` command shares: settings from flags, the environment and the config
file (:func:`load_settings`), the stores opened on one engine for the length of one command
(:func:`with_stores`), timestamps rendered for output (:func:`iso`), and :class:`StartupError`,
which ``main`` turns into exit code 1."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.config import Settings
from gateway.storage.engine import create_engine


class StartupError(Exception):
    """``serve`` cannot start (the message says what to do)."""


def load_settings(args: argparse.Namespace, env: Mapping[str, str], **flags: Any) -> Settings:
    return Settings.load(
        env, config_file=getattr(args, "config", None), database_url=args.database_url, **flags
    )


def run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


async def with_stores(settings: Settings, action: Callable[..., Coroutine[Any, Any, int]]) -> int:
    from gateway.storage.events import EventStore
    from gateway.storage.failed import FailedEventStore
    from gateway.storage.idempotency import IdempotencyStore
    from gateway.storage.tenants import TenantStore

    engine = create_engine(settings)
    try:
        return await action(
            tenants=TenantStore(engine),
            events=EventStore(engine),
            failed=FailedEventStore(engine, cap_per_project=settings.failed_events_per_project),
            settings=settings,
            engine=engine,
            idempotency=IdempotencyStore(
                engine,
                retention_s=settings.idempotency_retention_seconds,
                lock_timeout_s=settings.idempotency_lock_timeout_seconds,
            ),
        )
    finally:
        await engine.dispose()


def iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat()
