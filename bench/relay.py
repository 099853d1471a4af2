"""Relay throughput, measured: an outbox of N events is filled, ``eventgw relay --once`` delivers
it to a fresh JetStream stream as a process of its own, and its wall time and CPU time (user +
system, from the child's resource usage), less those of the same process over the empty outbox
(start, connect, exit), give events/s and CPU µs per event. Each run gets an
outbox of its own: a temporary SQLite file, or a temporary database on the PostgreSQL server of
``--database-url`` (dropped afterwards).

``measure()`` is what a benchmark scenario calls; ``python -m bench.relay`` prints
each run and the median as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import orjson
from sqlalchemy import text

from gateway import migrate
from gateway.config import Settings
from gateway.pb.event_pb2 import EVENT_TYPE_TRACK, Event
from gateway.storage.engine import create_engine, is_sqlite, now_us
from gateway.storage.events import EventRow, EventStore

PROJECT = "550e8400-e29b-41d4-a716-446655440000"


@dataclass(frozen=True, kw_only=True)
class RelayRun:
    events: int
    wall_s: float
    cpu_s: float
    idle_wall_s: float = 0.0  # the same process over an empty outbox: start, connect, exit
    idle_cpu_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / max(1e-9, self.wall_s - self.idle_wall_s)

    @property
    def cpu_us_per_event(self) -> float:
        return (self.cpu_s - self.idle_cpu_s) * 1e6 / self.events


def outbox_rows(n: int) -> list[EventRow]:
    """``n`` page views of one project, as gRPC stores them."""
    received, rows = now_us(), []
    for i in range(n):
        event = Event(id=str(uuid.uuid4()), project_id=PROJECT, dialect="grpc", name="page_view")
        event.type = EVENT_TYPE_TRACK
        event.properties.update({"path": f"/p/{i}", "ref": "https://example.com"})
        payload = event.SerializeToString()
        rows.append(EventRow(PROJECT, event.id, "grpc", "track", received, payload))
    return rows


async def fill(database_url: str, rows: list[EventRow]) -> None:
    engine = create_engine(Settings(database_url=database_url))
    try:
        store = EventStore(engine)
        for start in range(0, len(rows), 5000):
            async with engine.begin() as conn:
                await store.insert(conn, rows[start : start + 5000])
    finally:
        await engine.dispose()


async def _admin(server_url: str, statement: str) -> None:
    engine = create_engine(Settings(database_url=server_url))
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def run_relay(database_url: str, nats_url: str, events: int) -> RelayRun:
    """One ``relay --once`` over an already filled outbox, to a stream of its own."""
    name = f"RELAYBENCH_{uuid.uuid4().hex[:12]}"
    command = [sys.executable, "-m", "gateway", "relay", "--once", "--database-url", database_url]
    command += ["--nats-url", nats_url, "--stream", name, "--subject-prefix", name.lower()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    delivered = orjson.loads(done.stdout)["delivered"]
    if delivered != events:
        raise RuntimeError(f"relay delivered {delivered} of {events} events")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return RelayRun(events=events, wall_s=wall, cpu_s=cpu)


def _idle_then_full(url: str, nats_url: str, rows: list[EventRow]) -> RelayRun:
    idle = run_relay(url, nats_url, 0)
    asyncio.run(fill(url, rows))
    run = run_relay(url, nats_url, len(rows))
    return replace(run, idle_wall_s=idle.wall_s, idle_cpu_s=idle.cpu_s)


def measure(database_url: str, nats_url: str, *, events: int) -> RelayRun:
    """Fill a fresh outbox beside ``database_url`` with ``events`` events and relay it once."""
    rows = outbox_rows(events)
    if is_sqlite(create_engine(Settings(database_url=database_url))):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'outbox.db'}"
            migrate.upgrade(url)
            return _idle_then_full(url, nats_url, rows)
    name = f"relaybench_{uuid.uuid4().hex[:12]}"
    server, _, _ = database_url.rpartition("/")
    asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
    try:
        url = f"{server}/{name}"
        migrate.upgrade(url)
        return _idle_then_full(url, nats_url, rows)
    finally:
        asyncio.run(_admin(database_url, f'DROP DATABASE IF EXISTS "{name}"'))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay")
    parser.add_argument("--database-url", default="sqlite:///relaybench.db")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [measure(args.database_url, args.nats_url, events=args.events) for _ in range(args.runs)]
    for run in runs:
        figures = {"events_per_s": run.events_per_s, "cpu_us_per_event": run.cpu_us_per_event}
        print(orjson.dumps({**asdict(run), **figures}).decode())
    rates = [r.events_per_s for r in runs]
    cpus = [r.cpu_us_per_event for r in runs]
    summary = {
        "events_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
        "cpu_us_per_event": {"median": statistics.median(cpus), "min": min(cpus), "max": max(cpus)},
    }
    print(orjson.dumps({"summary": summary}).decode())


if __name__ == "__main__":
    main()
