"""The gateway under test: a fresh database, provisioned, and ``python -m gateway serve`` on it.

:func:`bench_database` yields a temporary SQLite file or a new PostgreSQL database (dropped
afterwards); :func:`provision` migrates it and creates a project with a key;
:class:`GatewayUnderTest` runs the gateway as a child process on free ports (with ``--relay`` and
the like when asked) and reads what the report needs from outside it: its peak RSS (sampled), CPU
time (psutil, children included) and group-commit counters (the operations listener's
``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil

from bench.report import CommitTotals

ROOT = Path(__file__).resolve().parents[1]
_COMMIT_METRICS = {
    "eventgw_commit_duration_seconds_count": "commits",
    "eventgw_commit_duration_seconds_sum": "seconds",
    "eventgw_commit_group_events_sum": "events",
    "eventgw_commit_group_requests_sum": "requests",
}


@contextlib.contextmanager
def bench_database(database_url: str | None, workdir: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in ``workdir``, or a new PostgreSQL database on
    the server of ``database_url`` (dropped afterwards)."""
    if database_url is None or database_url.startswith("sqlite"):
        yield database_url or f"sqlite:///{workdir / 'gateway.db'}"
        return
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name = f"eventgw_bench_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def provision(database_url: str) -> tuple[str, str]:
    """Migrate and create a project with one key: (project id, key)."""
    from gateway import migrate

    migrate.upgrade(database_url)

    async def create() -> tuple[str, str]:
        from gateway.config import Settings
        from gateway.storage.engine import create_engine
        from gateway.storage.tenants import TenantStore

        engine = create_engine(Settings(database_url=database_url))
        try:
            tenants = TenantStore(engine)
            project = await tenants.create_project("bench")
            _record, secret = await tenants.create_key(project.id)
            return project.id, secret
        finally:
            await engine.dispose()

    return asyncio.run(create())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayUnderTest:
    """``python -m gateway serve`` on free ports, with its peak RSS sampled every 20 ms."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        env: dict[str, str],
        serve_args: Sequence[str] = (),
    ) -> None:
        self.database_url = database_url
        self.serve_args = tuple(serve_args)  # e.g. --relay --nats-url URL
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.ops_port = _free_port()  # /metrics is served there
        self.log_path = workdir / "gateway.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gateway", "serve"),
                    *("--database-url", self.database_url),
                    *("--http", f"127.0.0.1:{self.http_port}"),
                    *("--grpc", f"127.0.0.1:{self.grpc_port}"),
                    *("--ops", f"127.0.0.1:{self.ops_port}"),
                    *self.serve_args,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log_path.read_text()[-2000:]}")
            try:
                for port in (self.http_port, self.grpc_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the gateway did not start listening") from None
                time.sleep(0.05)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        assert self.proc is not None
        try:
            process = psutil.Process(self.proc.pid)
            while not self._stop.wait(0.02):
                rss = process.memory_info().rss
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)
        except psutil.Error:
            return

    def cpu_seconds(self) -> float:
        """User and system CPU time so far of the gateway process and its children (the workers
        and the relay of ``serve --relay``, whose supervisor itself does no serving)."""
        assert self.proc is not None
        process = psutil.Process(self.proc.pid)
        total = 0.0
        for each in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = each.cpu_times()
                total += times.user + times.system
        return total

    def commit_totals(self) -> CommitTotals:
        """The gateway's group-commit counters (``/metrics``); all zero when it has none."""
        try:
            url = f"http://127.0.0.1:{self.ops_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return CommitTotals()
        totals = dict.fromkeys(_COMMIT_METRICS.values(), 0.0)
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            field = _COMMIT_METRICS.get(name.split("{")[0])
            if field is not None:
                totals[field] += float(value)
        return CommitTotals(**totals)

    def reset_peak(self) -> None:
        self.peak_rss = 0
        time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
