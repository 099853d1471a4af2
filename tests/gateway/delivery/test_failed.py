"""The relay publishes the failed events when told to (``relay_failed_events``), against the real
NATS JetStream, on both backends: an item a real request had refused becomes exactly one message
on ``<prefix>.failed.<project>`` holding its reason and its bytes, with ``Nats-Msg-Id:
failed:<seq>:<received_at>``, and is marked published after the ack; with the setting off
nothing is published; a restart, or an ack whose mark was lost, never puts it in the stream
twice."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import sys

import aiohttp
import grpc
import orjson
import pytest
from nats.aio.msg import Msg
from sqlalchemy import select, update

from gateway.config import Settings
from gateway.delivery.failed import FailedEventRelay, subject
from gateway.delivery.jetstream import Publisher
from gateway.delivery.outbox import Relay
from gateway.delivery.process import serve_relay
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from gateway.storage.engine import create_engine
from gateway.storage.failed import FailedEvent, FailedEventStore, failed
from gateway.storage.schema import failed_events
from tests.harness import ROOT, Gateway, eventually, started
from tests.jetstream import Stream, nats_url

pytestmark = pytest.mark.nats

ITEMS = [
    {"type": "track", "payload": {"eventId": "ok-1", "name": "fine", "path": "/"}},
    {"type": "track", "payload": {"name": "page_view", "path": "/", "scroll_depth": 140}},
]


async def refuse_one(gateway: Gateway) -> FailedEvent:
    """A Databuddy batch with one invalid item: the item is refused and kept; the other stored."""
    async with aiohttp.ClientSession() as http:
        url = f"{gateway.http_url}/batch?client_id={gateway.project_id}"
        async with http.post(url, json=ITEMS) as reply:
            assert reply.status == 200
    [kept] = await gateway.failed()
    return kept


async def published_at(database_url: str) -> list[int | None]:
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.connect() as conn:
            query = select(failed_events.c.published_at).order_by(failed_events.c.seq)
            return list((await conn.execute(query)).scalars())
    finally:
        await engine.dispose()


async def once(stream: Stream, database_url: str, **changes: object) -> dict[str, float]:
    out = io.StringIO()
    settings = stream.settings(database_url, **changes)
    assert await serve_relay(settings, once=True, out=out) == 0
    summary: dict[str, float] = orjson.loads(out.getvalue())
    return summary


def failed_messages(messages: list[Msg], stream: Stream) -> list[Msg]:
    return [m for m in messages if m.subject.startswith(f"{stream.prefix}.failed.")]


async def test_a_refused_item_is_published_once_with_its_reason_and_bytes(
    database_url: str, stream: Stream
) -> None:
    async with started(Settings(database_url=database_url)) as gateway:
        kept = await refuse_one(gateway)
    summary = await once(stream, database_url, relay_failed_events=True)
    assert (summary["delivered"], summary["failed_published"]) == (1, 1)

    messages = await stream.read()
    [message] = failed_messages(messages, stream)
    assert message.subject == f"{stream.prefix}.failed.{gateway.project_id}"
    assert message.headers == {"Nats-Msg-Id": f"failed:{kept.seq}:{kept.received_at}"}
    document = orjson.loads(message.data)
    assert document["project_id"] == gateway.project_id
    assert (document["dialect"], document["endpoint"]) == ("databuddy", "POST /batch")
    assert (document["code"], document["field"]) == (kept.code, "scroll_depth")
    assert document["message"] == "Invalid event schema"
    assert orjson.loads(document["raw"]) == ITEMS[1]
    assert document["raw_size"] == len(kept.raw)
    assert [m.subject.split(".")[-1] for m in messages if m is not message] == ["track"]
    [when] = await published_at(database_url)
    assert when is not None

    again = await once(stream, database_url, relay_failed_events=True)
    assert again["failed_published"] == 0
    assert len(failed_messages(await stream.read(), stream)) == 1


async def test_with_the_setting_off_nothing_is_published(database_url: str, stream: Stream) -> None:
    async with started(Settings(database_url=database_url)) as gateway:
        await refuse_one(gateway)
    summary = await once(stream, database_url)
    assert summary["delivered"] == 1 and "failed_published" not in summary
    messages = await stream.read()
    assert len(messages) == 1 and failed_messages(messages, stream) == []
    assert await published_at(database_url) == [None]


async def test_a_lost_mark_is_published_again_and_dropped_by_the_broker(
    database_url: str, stream: Stream
) -> None:
    """Acked but not marked (a crash between the ack and the commit), then a relay restart
    (``eventgw relay --once --failed-events``): the broker recognises each message id and the
    stream keeps one copy."""
    engine = create_engine(Settings(database_url=database_url))
    try:
        store = FailedEventStore(engine)
        await store.record([refusal(n) for n in range(3)])
        publisher = Publisher(nats_url())
        outbox = Relay(engine, publisher, stream=stream.name, subject_prefix=stream.prefix)
        relay = FailedEventRelay(
            engine, publisher, subject_prefix=stream.prefix, ensure_stream=outbox.ensure_stream
        )
        assert await relay.step() == 3
        assert (relay.stats.published, relay.stats.duplicates) == (3, 0)
        async with engine.begin() as conn:
            await conn.execute(update(failed_events).values(published_at=None))
    finally:
        await publisher.close()
        await engine.dispose()
    restarted = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "relay", "--once", "--failed-events"),
        *stream.cli_args(database_url),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await restarted.communicate()
    assert restarted.returncode == 0
    summary = orjson.loads(out)
    assert summary["failed_published"] == 3
    messages = failed_messages(await stream.read(), stream)
    assert [orjson.loads(m.data)["message"] for m in messages] == ["bad 0", "bad 1", "bad 2"]
    assert None not in await published_at(database_url)


async def test_a_refused_grpc_event_travels_as_base64_and_the_running_relay_publishes_it(
    database_url: str, stream: Stream
) -> None:
    stop = asyncio.Event()
    settings = stream.settings(database_url, relay_failed_events=True, relay_poll_seconds=0.02)
    async with started(Settings(database_url=database_url)) as gateway:
        task = asyncio.create_task(serve_relay(settings, stop=stop, handle_signals=False))
        try:
            bad = Event(id="x" * 513, name="too long an id")
            async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
                stub = gateway_pb2_grpc.EventGatewayStub(channel)
                await stub.SubmitBatch(
                    SubmitBatchRequest(events=[bad]),
                    metadata=[("authorization", f"Bearer {gateway.api_key}")],
                )
            await eventually(functools.partial(all_published, database_url, 1))
        finally:
            stop.set()
            assert await task == 0
    [message] = failed_messages(await stream.read(), stream)
    assert message.subject == subject(stream.prefix, gateway.project_id)
    document = orjson.loads(message.data)
    assert (document["dialect"], document["code"], document["field"]) == (
        "grpc",
        "invalid_field",
        "id",
    )
    assert Event.FromString(base64.b64decode(document["raw_base64"])) == bad


async def all_published(database_url: str, n: int) -> bool:
    marks = await published_at(database_url)
    return len(marks) >= n and None not in marks


def refusal(n: int) -> FailedEvent:
    return failed(
        project_id="6f1c2a7e-0b4d-4c8e-9a3f-2d5e7b9c1a04",
        dialect="ours",
        endpoint="POST /api/v1/batch",
        received_at=1_700_000_000_000_000 + n,
        code="invalid_event",
        message=f"bad {n}",
        field="event",
        raw=b'{"event":""}',
    )
