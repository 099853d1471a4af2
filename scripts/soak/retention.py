"""Soak: a gateway (``serve --relay``) on a fresh SQLite file with a short event retention,
driven by gRPC ``SubmitBatch`` at a steady rate; every ``--every`` seconds it prints the
database's size (file + WAL), the outbox's rows, and the gRPC p99 of the interval. At a steady
rate the size stops growing once the first retention window has passed.

    .venv/bin/python scripts/soak/retention.py --minutes 10 --rate 2000 --retention 60

``--retention 0`` runs the same load with retention off (events kept for ever), for comparing p99.
Needs NATS with JetStream (``--nats-url``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc.aio
import orjson

from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest

BATCH = 100


def footprint(db: Path) -> tuple[int, int]:
    """The database's bytes on disk (file, WAL, shared memory) and its outbox's rows."""
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    with sqlite3.connect(db) as conn:
        rows = int(conn.execute("select count(*) from events").fetchone()[0])
    return size, rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=2000, help="events/s")
    parser.add_argument("--retention", type=float, default=60, help="seconds; 0 keeps for ever")
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--grpc", default="127.0.0.1:50071")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    db = work / "soak.db"
    env = dict(os.environ, EVENTGW_EVENT_RETENTION_SECONDS=str(args.retention))
    env["EVENTGW_RETENTION_INTERVAL_SECONDS"] = str(max(1.0, min(10.0, args.retention / 4 or 10)))
    stream = f"SOAK_{uuid.uuid4().hex[:8]}"
    env.update(EVENTGW_NATS_STREAM=stream, EVENTGW_NATS_SUBJECT_PREFIX=stream.lower())
    url = f"sqlite:///{db}"
    py = sys.executable
    upgrade = await asyncio.create_subprocess_exec(
        py, "-m", "gateway", "db", "upgrade", "--database-url", url
    )
    await upgrade.wait()
    server = await asyncio.create_subprocess_exec(
        *(
            py,
            "-m",
            "gateway",
            "serve",
            "--database-url",
            url,
            "--relay",
            "--nats-url",
            args.nats_url,
        ),
        *("--http", "127.0.0.1:0", "--grpc", args.grpc, "--ops", "127.0.0.1:0"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert server.stdout is not None
    key = ""
    while not key:
        line = (await server.stdout.readline()).decode()
        if not line:
            raise SystemExit("the gateway exited before printing its key")
        if found := re.search(r"api key:\s+(\S+)", line):
            key = found.group(1)
    metadata = (("authorization", f"Bearer {key}"),)
    latencies: list[float] = []
    samples: list[tuple[float, int, int, float]] = []  # (seconds, bytes, rows, p99 ms)
    try:
        async with grpc.aio.insecure_channel(args.grpc) as channel:
            await channel.channel_ready()
            stub = gateway_pb2_grpc.EventGatewayStub(channel)
            start = time.monotonic()
            end, report, sent = start + args.minutes * 60, start + args.every, 0
            while (now := time.monotonic()) < end:
                due = start + sent / args.rate
                if due > now:
                    await asyncio.sleep(due - now)
                events = [Event(name="soak", id=f"soak-{sent + i}") for i in range(BATCH)]
                t0 = time.perf_counter()
                await stub.SubmitBatch(SubmitBatchRequest(events=events), metadata=metadata)
                latencies.append((time.perf_counter() - t0) * 1000)
                sent += BATCH
                if time.monotonic() >= report:
                    report += args.every
                    size, rows = footprint(db)
                    p99 = statistics.quantiles(latencies, n=100)[98]
                    samples.append((time.monotonic() - start, size, rows, p99))
                    print(
                        f"{time.monotonic() - start:6.0f}s  sent {sent:>9}  db {size / 1e6:8.1f} MB"
                        f"  rows {rows:>9}  p99 {p99:6.1f} ms",
                        flush=True,
                    )
                    latencies.clear()
    finally:
        server.terminate()
        await server.wait()
    summarize(samples, settle_s=max(120.0, 2 * args.retention))


def summarize(samples: list[tuple[float, int, int, float]], *, settle_s: float) -> None:
    """The size after the first retention windows (its range: flat when retention keeps up) and
    the p99 of the intervals (median and range)."""
    settled = [s for s in samples if s[0] >= settle_s] or samples
    sizes, p99s = [s[1] / 1e6 for s in settled], [s[3] for s in samples]
    print(
        orjson.dumps(
            {
                "settled_after_s": settle_s,
                "db_mb": {
                    "first": sizes[0],
                    "last": sizes[-1],
                    "min": min(sizes),
                    "max": max(sizes),
                },
                "p99_ms": {"median": statistics.median(p99s), "min": min(p99s), "max": max(p99s)},
            }
        ).decode()
    )


if __name__ == "__main__":
    asyncio.run(main())
