"""SQLite's WAL is checkpointed by ``WalCheckpointer``, not inside the group commit's commits (on
the writer's own connection) and not on the event loop: past SQLite's default 1000-page threshold
the database file still holds none of the new rows (the log does), and the checkpointer's thread
then copies them into it without any commit of its own, even while the event loop is too busy to
run a task."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import migrate
from gateway.config import Settings
from gateway.storage.checkpoint import WalCheckpointer
from gateway.storage.engine import create_engine, engine_sqlite_pragmas, sqlite_file
from gateway.storage.events import commit_rows
from gateway.storage.writer import SqliteWriter
from tests.gateway.storage.conftest import row

PAGE = 4096  # SQLite's default page size


def pages(path: str) -> int:
    return os.path.getsize(path) // PAGE


def blocking_wait(check: Callable[[], bool], limit_s: float = 10) -> bool:
    """Poll ``check`` without yielding to the event loop (nothing is timed: the limit only
    bounds a failure)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    path = str(tmp_path / "wal.db")
    migrate.upgrade(f"sqlite:///{path}")
    return path


async def test_commits_leave_the_log_to_the_checkpointer_thread(sqlite_path: str) -> None:
    engine = create_engine(Settings(database_url=f"sqlite:///{sqlite_path}"))
    assert sqlite_file(engine) == sqlite_path
    checkpointer = WalCheckpointer(sqlite_path)
    writer = SqliteWriter(sqlite_path, await engine_sqlite_pragmas(engine))
    try:
        padding = b"x" * PAGE  # about a page a row
        for group in range(20):
            rows = [row("p", f"{group}-{i}") for i in range(100)]
            rows = [r._replace(payload=r.payload + padding) for r in rows]
            assert await writer.run(functools.partial(commit_rows, rows=rows)) is None
        # Past twice the default threshold, and still all in the log.
        assert pages(f"{sqlite_path}-wal") > 2000
        assert pages(sqlite_path) < 100

        checkpointer.start()
        # The event loop is blocked here: only a thread of its own can copy the log meanwhile.
        assert blocking_wait(lambda: pages(sqlite_path) > 2000)
        checkpointer.stop()
        logged, copied = checkpointer.checkpoint()
        assert logged == copied > 2000
    finally:
        checkpointer.stop()
        await writer.close()
        await engine.dispose()


def test_only_a_sqlite_file_has_a_log_to_checkpoint() -> None:
    memory = create_engine(Settings(database_url="sqlite://"))
    postgres = create_engine(Settings(database_url="postgresql://postgres@127.0.0.1:5432/test"))
    assert sqlite_file(memory) is None
    assert sqlite_file(postgres) is None
