"""SQLite's WAL is checkpointed by ``WalCheckpointer``, not inside commits: past SQLite's default
1000-page threshold the database file still holds none of the new rows (the log does), and the
checkpointer's task then copies them into it without any commit of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import migrate
from gateway.config import Settings
from gateway.storage.checkpoint import WalCheckpointer
from gateway.storage.engine import create_engine
from gateway.storage.events import EventStore
from tests.harness import eventually
from tests.storage.conftest import row

PAGE = 4096  # SQLite's default page size


def pages(path: str) -> int:
    return os.path.getsize(path) // PAGE


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    path = str(tmp_path / "wal.db")
    migrate.upgrade(f"sqlite:///{path}")
    return path


async def test_commits_leave_the_log_to_the_checkpointer(sqlite_path: str) -> None:
    engine = create_engine(Settings(database_url=f"sqlite:///{sqlite_path}"))
    checkpointer = WalCheckpointer(engine, interval_s=0.01)
    try:
        store = EventStore(engine)
        padding = b"x" * PAGE  # about a page a row
        async with engine.connect() as conn:
            for group in range(20):
                rows = [row("p", f"{group}-{i}") for i in range(100)]
                rows = [r._replace(payload=r.payload + padding) for r in rows]
                assert await store.insert_committed(conn, rows) is None
        # Past twice the default threshold, and still all in the log.
        assert pages(f"{sqlite_path}-wal") > 2000
        assert pages(sqlite_path) < 100

        await checkpointer.start()

        async def copied() -> bool:
            return pages(sqlite_path) > 2000

        await eventually(copied, limit_s=10)
        await checkpointer.stop()  # a checkpoint while the task's runs answers -1: busy
        logged, copied_pages = await checkpointer.checkpoint()
        assert logged == copied_pages > 0
    finally:
        await checkpointer.stop()
        await engine.dispose()
