"""Running a real gateway for tests: in this process on free ports (``started``), or as a
separate ``eventgw serve`` process (``GatewayProcess``) for tests that kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway import migrate
from gateway.config import Settings
from gateway.pb.event_pb2 import Event
from gateway.server import Bound, run
from gateway.storage.engine import create_engine
from gateway.storage.events import EventStore
from gateway.storage.failed import FailedEvent, FailedEventStore
from gateway.storage.tenants import TenantStore

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all held open until all are chosen (a port closed at once can
    be handed out again by the next bind)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


@dataclass
class Gateway:
    settings: Settings
    bound: Bound
    project_id: str
    api_key: str
    key_id: str
    extra_keys: dict[str, str] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://{self.bound.http_host}:{self.bound.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.bound.grpc_host}:{self.bound.grpc_port}"

    @property
    def ops_url(self) -> str:
        return f"http://{self.bound.ops_host}:{self.bound.ops_port}"

    async def stored(self, project_id: str | None = None) -> list[Event]:
        return await stored_events(self.settings.database_url, project_id or self.project_id)

    async def failed(self, *, at_least: int = 1, wait: float = 5.0) -> list[FailedEvent]:
        """The project's failed events, once there are ``at_least`` of them (they are written
        a moment after the answer) or ``wait`` seconds passed."""
        engine = create_engine(Settings(database_url=self.settings.database_url))
        try:
            store, deadline = FailedEventStore(engine), time.monotonic() + wait
            while True:
                found = await store.list(self.project_id)
                if len(found) >= at_least or time.monotonic() > deadline:
                    return found
                await asyncio.sleep(0.05)
        finally:
            await engine.dispose()


async def stored_events(database_url: str, project_id: str) -> list[Event]:
    engine = create_engine(Settings(database_url=database_url))
    try:
        return [Event.FromString(p) async for p in EventStore(engine).export(project_id)]
    finally:
        await engine.dispose()


async def provision(
    database_url: str, *, project_id: str | None = None, scopes: tuple[str, ...] = ("track:events",)
) -> tuple[str, str, str]:
    """Migrate ``database_url`` and create a project with one key: (project id, key, key id)."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(Settings(database_url=database_url))
    try:
        tenants = TenantStore(engine)
        project = await tenants.create_project("test", project_id=project_id)
        record, secret = await tenants.create_key(project.id, scopes=scopes)
        return project.id, secret, record.id
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def started(settings: Settings, *, project_id: str | None = None) -> AsyncIterator[Gateway]:
    """Provision the database, serve it on free ports in this event loop, stop it afterwards."""
    pid, key, key_id = await provision(settings.database_url, project_id=project_id)
    settings = settings.replace(http_port=0, grpc_port=0, ops_port=0)
    stop = asyncio.Event()
    ready: asyncio.Future[Bound] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(settings, stop=stop, on_ready=ready.set_result, handle_signals=False)
    )
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what stopped it
    try:
        yield Gateway(
            settings=settings, bound=ready.result(), project_id=pid, api_key=key, key_id=key_id
        )
    finally:
        stop.set()
        await task


class GatewayProcess:
    """``python -m gateway serve`` in a child process (for SIGKILL / SIGTERM tests)."""

    def __init__(
        self,
        database_url: str,
        *,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.database_url = database_url
        self.extra_args = extra_args
        self.http_port, self.grpc_port, self.ops_port = free_ports(3)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--database-url",
                self.database_url,
                "--http",
                f"127.0.0.1:{self.http_port}",
                "--grpc",
                f"127.0.0.1:{self.grpc_port}",
                "--ops",
                f"127.0.0.1:{self.ops_port}",
                *self.extra_args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2),
                    socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.2),
                ):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("gateway did not start listening")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float = 60) -> None:
    """Wait until ``check()`` holds (``limit_s`` only bounds a hang; nothing is timed)."""
    async with asyncio.timeout(limit_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)
