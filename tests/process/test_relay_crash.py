"""The relay under failure, against the real NATS: SIGKILL mid-stream then a restart, two relays
at once on PostgreSQL, and a broker (a private nats-server) that is down when the relay starts
and restarts mid-stream. Each ends with exactly one stream message per stored event."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from pathlib import Path

import nats
import orjson
import pytest

from gateway.config import Settings
from gateway.delivery.jetstream import Publisher
from gateway.delivery.outbox import Relay, outbox_lag
from gateway.delivery.process import connect
from gateway.storage.engine import create_engine
from tests.gateway.delivery.test_outbox import delivered, delivered_count
from tests.harness import ROOT, eventually
from tests.jetstream import NATS_SERVER, Broker, Stream, event_rows, nats_url, seed

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def assert_one_message_per_event(stream: Stream, n: int) -> None:
    assert await stream.count() == n
    ids = [m.headers["Nats-Msg-Id"] for m in await stream.read() if m.headers]
    assert len(ids) == len(set(ids)) == n
    assert {i.split(":", 1)[1] for i in ids} == {f"ev-{i}" for i in range(n)}


async def has_messages(stream: Stream, n: int) -> bool:
    return await stream.count() >= n


async def test_sigkill_mid_stream_then_restart(
    database_url: str, stream: Stream, tmp_path: Path
) -> None:
    n = 10_000
    await seed(database_url, event_rows(n))
    command = [sys.executable, "-m", "gateway", "relay", *stream.cli_args(database_url)]
    with (tmp_path / "relay.log").open("wb") as log:
        relay = await asyncio.create_subprocess_exec(
            *command, "--batch-size", "500", cwd=ROOT, stderr=log
        )
        try:
            await eventually(functools.partial(has_messages, stream, n // 10))
        finally:
            relay.send_signal(signal.SIGKILL)
            await relay.wait()
    in_stream, marked = await stream.count(), await delivered_count(database_url)
    assert marked <= in_stream < n  # killed mid-stream; nothing marked before its ack

    restarted = await asyncio.create_subprocess_exec(
        *command, "--once", cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await restarted.communicate()
    assert restarted.returncode == 0
    summary = orjson.loads(stdout)
    assert summary["delivered"] == n - marked
    assert summary["pending"] == 0
    assert summary["duplicates"] >= in_stream - marked  # re-sent, dropped by the broker
    await assert_one_message_per_event(stream, n)


@pytest.mark.postgres
async def test_two_relays_at_once_never_publish_a_row_twice(
    postgres_url: str, stream: Stream
) -> None:
    n = 6_000
    await seed(postgres_url, event_rows(n))
    engines = [create_engine(Settings(database_url=postgres_url)) for _ in range(2)]
    clients = [Publisher(nats_url()) for _ in range(2)]
    relays = [
        Relay(
            e,
            c,
            stream=stream.name,
            subject_prefix=stream.prefix,
            batch_size=250,
        )
        for e, c in zip(engines, clients, strict=True)
    ]
    try:
        await relays[0].ensure_stream()
        await asyncio.gather(*(r.drain() for r in relays))
        assert (await outbox_lag(engines[0])).pending == 0
    finally:
        for c in clients:
            await c.close()
        for e in engines:
            await e.dispose()
    # SKIP LOCKED shared the rows out: each published by one relay, none re-sent.
    assert sum(r.stats.delivered for r in relays) == n
    assert [r.stats.duplicates for r in relays] == [0, 0]
    assert all(r.stats.delivered > 0 for r in relays)
    await assert_one_message_per_event(stream, n)


@pytest.mark.skipif(not Path(NATS_SERVER).exists(), reason="needs the nats-server binary")
async def test_broker_down_at_start_and_restarted_mid_stream(
    database_url: str, tmp_path: Path
) -> None:
    """The relay starts before its broker does, then the broker restarts mid-stream (its stream
    kept on disk): every event ends up in the stream exactly once."""
    first, second = 4_000, 2_000
    broker, stop = Broker(tmp_path / "jetstream"), asyncio.Event()
    engine = create_engine(Settings(database_url=database_url))
    await seed(database_url, event_rows(first))

    async def relay() -> Relay:
        nc = await connect(broker.url, stop=stop)  # retries until the broker listens
        assert nc is not None
        r = Relay(
            engine,
            nc,
            stream="EVENTGW_EVENTS",
            subject_prefix="eventgw.events",
            batch_size=200,
            ack_timeout_s=1.0,
        )
        try:
            await r.run(stop, poll_s=0.02)
        finally:
            await nc.close()
        return r

    task = asyncio.create_task(relay())
    try:
        await asyncio.sleep(0.5)  # the relay is retrying its connection meanwhile
        assert not task.done()
        await broker.start()
        await eventually(functools.partial(delivered, database_url, first // 4))
        await broker.stop()  # mid-stream
        await seed(database_url, event_rows(second, start=first))
        await asyncio.sleep(0.5)  # publishes fail meanwhile: those rows stay undelivered
        await broker.start()
        await eventually(functools.partial(delivered, database_url, first + second))
    finally:
        stop.set()
        stats = (await task).stats
        await engine.dispose()
    try:
        nc = await nats.connect(broker.url)
        stream = Stream("EVENTGW_EVENTS", "eventgw.events", nc, nc.jetstream())
        try:
            await assert_one_message_per_event(stream, first + second)
        finally:
            await nc.close()
    finally:
        await broker.stop()
    assert stats.delivered == first + second
