"""Async engines for the two supported backends, from plain URLs.

``sqlite:///path`` runs on aiosqlite in WAL mode with ``synchronous=FULL`` (a commit is on disk
before it returns) unless configured otherwise, its log checkpointed by ``WalCheckpointer``;
the group commit writes on a plain ``sqlite3`` connection set up the same way
(``sqlite_pragmas``; ``gateway.storage.writer``);
``postgresql://user@host/db`` runs on asyncpg with a connection pool. Both are driven by the same
code and schema. Driver errors never carry the statement's parameters (``hide_parameters``):
those are event payloads and key hashes, and errors end up in logs. ``storage_errors`` is the
one place a failing database becomes the retryable ``StorageUnavailable``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.config import ConfigError, Settings
from gateway.errors import GatewayError, StorageUnavailable
from gateway.storage.checkpoint import AUTOCHECKPOINT_PAGES

log = logging.getLogger(__name__)

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """Map a plain database URL to its async driver (``sqlite://`` → ``sqlite+aiosqlite://``)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"database URL {url!r} is not a URL") from exc
    backend = parsed.drivername.split("+")[0]
    if backend not in _DRIVERS:
        raise ConfigError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    return parsed.set(drivername=_DRIVERS[backend]).render_as_string(hide_password=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine; None for other backends and in-memory databases."""
    database = engine.url.database
    if not is_sqlite(engine) or not database or database == ":memory:":
        return None
    return database


def create_engine(settings: Settings) -> AsyncEngine:
    url = async_url(settings.database_url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        synchronous = settings.sqlite_synchronous.upper()
        max_bytes = settings.sqlite_max_bytes

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in sqlite_pragmas(synchronous):
                cursor.execute(pragma)
            if max_bytes:  # the file may not grow past this: writes then fail (SQLITE_FULL)
                cursor.execute("PRAGMA page_size")
                page_size = cursor.fetchone()[0]
                cursor.execute(f"PRAGMA max_page_count={max(1, max_bytes // page_size)}")
            cursor.close()

        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        hide_parameters=True,
    )


def sqlite_pragmas(synchronous: str | int, max_page_count: int | None = None) -> tuple[str, ...]:
    """How every SQLite connection of the gateway is set up: the engine's pooled ones and the
    group commit's own (``gateway.storage.writer``); ``max_page_count`` caps the file."""
    cap = () if max_page_count is None else (f"PRAGMA max_page_count={max_page_count}",)
    return (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA busy_timeout=30000",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}",
        *cap,
    )


async def engine_sqlite_pragmas(engine: AsyncEngine) -> tuple[str, ...]:
    """``sqlite_pragmas`` as ``engine``'s connections have them (their ``synchronous`` and
    ``max_page_count`` read back from one), for a plain ``sqlite3`` connection to the same
    database."""
    async with engine.connect() as conn:
        level = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one()
        cap = (await conn.exec_driver_sql("PRAGMA max_page_count")).scalar_one()
    return sqlite_pragmas(int(level), int(cap))


def now_us() -> int:
    """Now, in the schema's time unit (integer microseconds since the epoch)."""
    return time.time_ns() // 1000


@contextlib.contextmanager
def storage_errors(operation: str) -> Iterator[None]:
    """Inside, a database that cannot answer raises ``StorageUnavailable`` (503 / UNAVAILABLE,
    retry after 1 s) instead of an internal error; the gateway's own errors pass unchanged."""
    try:
        yield
    except GatewayError:
        raise
    except Exception as exc:
        log.warning("%s failed: %s", operation, type(exc).__name__, exc_info=True)
        raise StorageUnavailable("Storage is unavailable", retry_after=1) from exc
