"""Fixtures of the relay tests, against the real NATS JetStream server of
``EVENTGW_TEST_NATS_URL`` (default ``nats://127.0.0.1:4222``): each test gets a stream and subject
prefix of its own (deleted afterwards), so tests never see each other's messages; helpers seed
the outbox and read a stream back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from gateway.config import Settings
from gateway.pb.event_pb2 import Event
from gateway.storage.engine import create_engine, now_us
from gateway.storage.events import EventRow, EventStore
from tests.harness import free_port

TYPES = ("track", "page_view", "custom")
PROJECTS = (str(uuid.uuid4()), str(uuid.uuid4()))


def nats_url() -> str:
    return os.environ.get("EVENTGW_TEST_NATS_URL", "nats://127.0.0.1:4222")


@dataclass(frozen=True)
class Stream:
    name: str
    prefix: str
    nc: NATS
    js: JetStreamContext

    def settings(self, database_url: str, **changes: object) -> Settings:
        return Settings(
            database_url=database_url,
            nats_url=nats_url(),
            nats_stream=self.name,
            nats_subject_prefix=self.prefix,
        ).replace(**changes)

    def cli_args(self, database_url: str) -> list[str]:
        return [
            "--database-url",
            database_url,
            "--nats-url",
            nats_url(),
            "--stream",
            self.name,
            "--subject-prefix",
            self.prefix,
        ]

    async def count(self) -> int:
        try:
            return int((await self.js.stream_info(self.name)).state.messages)
        except nats.js.errors.NotFoundError:
            return 0

    async def read(self) -> list[Msg]:
        """Every message in the stream, in stream order."""
        n = await self.count()
        sub = await self.js.subscribe(f"{self.prefix}.>", stream=self.name, ordered_consumer=True)
        try:
            return [await sub.next_msg(timeout=10) for _ in range(n)]
        finally:
            await sub.unsubscribe()


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    tag = uuid.uuid4().hex[:10]
    try:
        nc = await nats.connect(nats_url(), connect_timeout=2, allow_reconnect=False)
    except Exception as exc:
        pytest.fail(
            f"NATS at {nats_url()} is unreachable ({exc!r}): start it with JetStream (.ci/run"
            ' does), set EVENTGW_TEST_NATS_URL, or deselect with -m "not nats"',
            pytrace=False,
        )
    js = nc.jetstream()
    try:
        yield Stream(name=f"EVENTGW_TEST_{tag}", prefix=f"eventgw_test_{tag}.events", nc=nc, js=js)
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(f"EVENTGW_TEST_{tag}")
        await nc.close()


def event_rows(n: int, *, start: int = 0, received_at: int | None = None) -> list[EventRow]:
    rows = []
    for i in range(start, start + n):
        project, kind = PROJECTS[i % 2], TYPES[i % 3]
        event = Event(id=f"ev-{i}", project_id=project, dialect="grpc", name=f"n{i}")
        event.received_at.FromMicroseconds(received_at or now_us())
        rows.append(
            EventRow(
                project_id=project,
                event_id=event.id,
                dialect="grpc",
                event_type=kind,
                received_at=event.received_at.ToMicroseconds(),
                payload=event.SerializeToString(),
            )
        )
    return rows


async def seed(database_url: str, rows: list[EventRow]) -> None:
    engine = create_engine(Settings(database_url=database_url))
    try:
        store = EventStore(engine)
        for start in range(0, len(rows), 5000):
            async with engine.begin() as conn:
                await store.insert(conn, rows[start : start + 5000])
    finally:
        await engine.dispose()


NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class Broker:
    """A NATS server of this test's own (free port, JetStream storage in a temporary directory),
    so it can be stopped and restarted without disturbing anyone else's."""

    def __init__(self, store: Path, *extra: str) -> None:
        self.port, self.store, self.extra = free_port(), store, extra
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *(NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)),
            *self.extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()
