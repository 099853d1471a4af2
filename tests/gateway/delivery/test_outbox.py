"""The outbox relay against the real NATS JetStream, on both backends: every stored event becomes
exactly one message, in order, on ``<prefix>.<project>.<type>`` with ``Nats-Msg-Id``; rows are
marked delivered only after the ack; a restart resumes; a lost commit after the ack is re-sent
and dropped by the broker; the lag is visible."""

from __future__ import annotations

import asyncio
import functools
import io

import orjson
import pytest
from sqlalchemy import func, select, update

from gateway.config import Settings
from gateway.delivery.jetstream import Publisher
from gateway.delivery.outbox import Relay, outbox_lag, subject_token
from gateway.delivery.process import connect, serve_relay
from gateway.pb.event_pb2 import Event
from gateway.storage.engine import create_engine, now_us
from gateway.storage.schema import events
from tests.harness import eventually, free_port
from tests.jetstream import Stream, event_rows, nats_url, seed

pytestmark = pytest.mark.nats


async def delivered_count(database_url: str) -> int:
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.connect() as conn:
            query = select(func.count()).where(events.c.delivered_at.is_not(None))
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def delivered(database_url: str, n: int) -> bool:
    return await delivered_count(database_url) >= n


async def once(stream: Stream, database_url: str, **changes: object) -> dict[str, float]:
    out = io.StringIO()
    code = await serve_relay(stream.settings(database_url, **changes), once=True, out=out)
    assert code == 0
    summary: dict[str, float] = orjson.loads(out.getvalue())
    return summary


async def test_delivers_every_event_once_in_order(database_url: str, stream: Stream) -> None:
    rows = event_rows(500)
    await seed(database_url, rows)
    summary = await once(stream, database_url, relay_batch_size=64)
    assert summary == {"delivered": 500, "duplicates": 0, "pending": 0, "lag_seconds": 0.0}

    messages = await stream.read()
    assert [m.headers and m.headers["Nats-Msg-Id"] for m in messages] == [
        f"{r.project_id}:{r.event_id}" for r in rows
    ]
    assert [m.subject for m in messages] == [
        f"{stream.prefix}.{r.project_id}.{r.event_type}" for r in rows
    ]
    assert [m.data for m in messages] == [r.payload for r in rows]
    assert Event.FromString(messages[0].data).id == "ev-0"
    assert await delivered_count(database_url) == 500


async def test_restart_resumes_where_it_stopped(database_url: str, stream: Stream) -> None:
    await seed(database_url, event_rows(300))
    engine = create_engine(Settings(database_url=database_url))
    try:
        publisher = Publisher(nats_url())
        relay = Relay(
            engine, publisher, stream=stream.name, subject_prefix=stream.prefix, batch_size=100
        )
        assert await relay.step() == 100  # then "stops"
        assert (await outbox_lag(engine)).pending == 200
    finally:
        await publisher.close()
        await engine.dispose()
    await seed(database_url, event_rows(50, start=300))
    summary = await once(stream, database_url)
    assert (summary["delivered"], summary["duplicates"], summary["pending"]) == (250, 0, 0)
    ids = [m.headers["Nats-Msg-Id"].split(":")[1] for m in await stream.read() if m.headers]
    assert ids == [f"ev-{i}" for i in range(350)]


async def test_lost_commit_is_resent_and_dropped_by_the_broker(
    database_url: str, stream: Stream
) -> None:
    """Acked but not marked (a crash between the broker's ack and the commit): the relay sends
    the events again, the broker recognises every Nats-Msg-Id, the stream keeps one copy."""
    await seed(database_url, event_rows(200))
    await once(stream, database_url)
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(update(events).values(delivered_at=None))
    finally:
        await engine.dispose()
    summary = await once(stream, database_url)
    assert (summary["delivered"], summary["duplicates"], summary["pending"]) == (200, 200, 0)
    assert await stream.count() == 200


async def test_lag_counts_and_ages_the_undelivered(database_url: str, stream: Stream) -> None:
    minute_ago = now_us() - 60_000_000
    await seed(database_url, event_rows(10, received_at=minute_ago))
    engine = create_engine(Settings(database_url=database_url))
    try:
        lag = await outbox_lag(engine)
        assert (lag.pending, lag.oldest_received_us) == (10, minute_ago)
        assert lag.lag_seconds >= 60
        await once(stream, database_url)
        assert await outbox_lag(engine) == type(lag)(
            pending=0, oldest_received_us=None, lag_seconds=0.0
        )
    finally:
        await engine.dispose()


async def test_continuous_relay_delivers_new_commits_and_stops(
    database_url: str, stream: Stream
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve_relay(
            stream.settings(database_url, relay_poll_seconds=0.02),
            stop=stop,
            handle_signals=False,
        )
    )
    try:
        for round_ in range(3):
            await seed(database_url, event_rows(40, start=40 * round_))
            want = 40 * (round_ + 1)
            await eventually(functools.partial(delivered, database_url, want))
    finally:
        stop.set()
        assert await task == 0
    assert await stream.count() == 120


def test_subject_tokens_are_safe() -> None:
    assert subject_token("550e8400-e29b-41d4-a716-446655440000") == (
        "550e8400-e29b-41d4-a716-446655440000"
    )
    assert subject_token("a.b*c> d\te") == "a_b_c__d_e"
    assert subject_token("") == "_"


async def test_a_password_in_the_nats_url_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    url = f"nats://relay:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(TimeoutError) as refused:
        await connect(url, stop=asyncio.Event(), give_up_after=0.3)
    assert "s3cret" not in str(refused.value) and "relay:***@" in str(refused.value)
    assert "relay:***@" in caplog.text
    assert "s3cret" not in caplog.text
