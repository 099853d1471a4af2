"""The relay's publisher against real nats-servers: acks, duplicates, refusals, frames split
across reads, user/password and token authentication, TLS, a connection lost and made again."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.delivery.jetstream import (
    DUPLICATE,
    FAILED,
    NO_STREAM,
    PENDING,
    STORED,
    Batch,
    NatsError,
    Publisher,
)
from tests.harness import eventually
from tests.jetstream import NATS_SERVER, Broker, Stream, nats_url
from tests.tls import Authority

pytestmark = pytest.mark.nats
needs_server = pytest.mark.skipif(not Path(NATS_SERVER).exists(), reason="needs nats-server")


async def add_stream(
    publisher: Publisher, name: str, prefix: str, *, storage: str = "memory"
) -> None:
    config = {"name": name, "subjects": [f"{prefix}.>"], "storage": storage}
    answer = await publisher.api(f"STREAM.CREATE.{name}", config)
    assert "error" not in answer, answer


async def test_acks_duplicates_and_no_stream(stream: Stream) -> None:
    publisher = Publisher(nats_url())
    try:
        await add_stream(publisher, stream.name, stream.prefix)
        batch = [(f"{stream.prefix}.p.track", f"id-{i}", b"x" * i) for i in range(300)]
        assert await publisher.publish(batch, timeout_s=5) == [STORED] * 300
        again = await publisher.publish(batch[:10] + batch[-1:], timeout_s=5)
        assert again == [DUPLICATE] * 11
        elsewhere = [(f"nostream{uuid.uuid4().hex}.x", "a", b"{}"), batch[0]]
        assert await publisher.publish(elsewhere, timeout_s=5) == [NO_STREAM, DUPLICATE]
    finally:
        await publisher.close()
    messages = await stream.read()
    assert [m.headers and m.headers["Nats-Msg-Id"] for m in messages] == [m[1] for m in batch]
    assert [m.data for m in messages] == [m[2] for m in batch]


async def test_batches_in_flight_at_once_keep_their_order(stream: Stream) -> None:
    publisher = Publisher(nats_url())
    try:
        await add_stream(publisher, stream.name, stream.prefix)
        await publisher.connect()
        batches = [
            [(f"{stream.prefix}.p.t", f"b{b}-{i}", b"%d" % i) for i in range(100)] for b in range(3)
        ]
        sent = [publisher.send(batch) for batch in batches]
        for batch in reversed(sent):  # awaited in any order
            assert await publisher.confirm(batch, timeout_s=5) == [STORED] * 100
    finally:
        await publisher.close()
    ids = [m.headers and m.headers["Nats-Msg-Id"] for m in await stream.read()]
    assert ids == [message[1] for batch in batches for message in batch]


def test_frames_split_anywhere_are_read_alike() -> None:
    """The broker's answers arrive in reads of any size: every split of the same bytes gives the
    same answers (MSG and HMSG frames, a PING between them)."""

    def msg(index: int, data: bytes) -> bytes:
        return b"MSG _INBOX.t.1x%d 1 %d\r\n%s\r\n" % (index, len(data), data)

    no_responders = b"NATS/1.0 503\r\n\r\n"
    acks = [
        msg(0, b'{"stream":"S","seq":1}'),
        msg(1, b'{"stream":"S","seq":1,"duplicate": true}'),
        b"PING\r\n",
        b"HMSG _INBOX.t.1x2 1 %d %d\r\n%s\r\n" % (16, 16, no_responders),
        msg(3, b'{"error":{"code":503,"description":"insufficient resources"}}'),
    ]
    wire = b"".join(acks)
    expected = [STORED, DUPLICATE, NO_STREAM, FAILED]
    for step in (1, 2, 3, 7, 13, len(wire)):
        answers, pongs = _answers_of([wire[i : i + step] for i in range(0, len(wire), step)])
        assert (answers, pongs) == (expected, 1), step


def _answers_of(chunks: list[bytes]) -> tuple[list[str], int]:
    publisher = Publisher("nats://127.0.0.1:1")
    batch = Batch(1, 4)
    publisher._inbox, publisher._batches = b"_INBOX.t", {1: batch}
    writes: list[bytes] = []

    class Writer:
        def write(self, data: bytes) -> None:
            writes.append(data)

    buf = b""
    for chunk in chunks:
        buf = publisher._parse(buf + chunk, b"_INBOX.t.", Writer())  # type: ignore[arg-type]
    assert buf == b""
    assert batch.done.is_set()
    return batch.answers, writes.count(b"PONG\r\n")


@needs_server
async def test_an_event_over_the_brokers_max_payload_is_refused_alone(tmp_path: Path) -> None:
    (tmp_path / "nats.conf").write_text("max_payload: 4096\n")
    broker = Broker(tmp_path / "js", "-c", str(tmp_path / "nats.conf"))
    await broker.start()
    publisher = Publisher(broker.url)
    try:
        await eventually(_connects(publisher))
        await add_stream(publisher, "BIG", "big")
        batch = [("big.a", "1", b"a"), ("big.b", "2", b"b" * 5000), ("big.c", "3", b"c")]
        assert await publisher.publish(batch, timeout_s=5) == [STORED, FAILED, STORED]
        assert publisher.connected  # the broker would have closed it had the frame been sent
    finally:
        await publisher.close()
        await broker.stop()


@needs_server
@pytest.mark.parametrize(
    ("server_args", "good", "bad"),
    [
        (("--user", "relay", "--pass", "s3cr%t"), "relay:s3cr%25t@", "relay:wrong@"),
        (("--auth", "t0ken"), "t0ken@", "other@"),
    ],
    ids=["user-password", "token"],
)
async def test_credentials_in_the_url(
    tmp_path: Path, server_args: tuple[str, ...], good: str, bad: str
) -> None:
    broker = Broker(tmp_path / "js", *server_args)
    await broker.start()
    try:
        address = broker.url.removeprefix("nats://")
        publisher = Publisher(f"nats://{good}{address}")
        await eventually(_connects(publisher))
        await add_stream(publisher, "AUTH", "auth")
        assert await publisher.publish([("auth.x", "1", b"{}")], timeout_s=5) == [STORED]
        await publisher.close()
        with pytest.raises(NatsError, match=r"refused|closed"):
            await Publisher(f"nats://{bad}{address}").connect()
    finally:
        await broker.stop()


@needs_server
async def test_tls(tmp_path: Path) -> None:
    authority = Authority(tmp_path, "nats-ca")
    server = authority.issue("localhost", server=True)
    broker = Broker(
        tmp_path / "js", "--tls", "--tlscert", str(server.cert), "--tlskey", str(server.key)
    )
    await broker.start()
    try:
        url = broker.url.replace("nats://", "tls://")
        trusted = ssl.create_default_context(cafile=str(authority.path))
        publisher = Publisher(url, ssl_context=trusted)
        await eventually(_connects(publisher))
        await add_stream(publisher, "TLS", "tls")
        assert await publisher.publish([("tls.x", "1", b"{}")], timeout_s=5) == [STORED]
        await publisher.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not know it
            await Publisher(url).connect()
    finally:
        await broker.stop()


@needs_server
async def test_a_lost_connection_fails_the_batch_and_the_next_call_connects_again(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path / "js")
    await broker.start()
    publisher = Publisher(broker.url)
    try:
        await eventually(_connects(publisher))
        await add_stream(publisher, "LOST", "lost", storage="file")
        assert await publisher.publish([("lost.x", "1", b"{}")], timeout_s=5) == [STORED]
        await broker.stop()
        await eventually(lambda: _true(not publisher.connected))
        with pytest.raises(OSError):
            await publisher.publish([("lost.x", "2", b"{}")], timeout_s=1)
        await broker.start()  # the stream is kept on disk
        await eventually(_connects(publisher))
        answers = await publisher.publish(
            [("lost.x", "1", b"{}"), ("lost.x", "2", b"{}")], timeout_s=5
        )
        assert answers == [DUPLICATE, STORED]
        assert publisher.connections == 2
    finally:
        await publisher.close()
        await broker.stop()


def _connects(publisher: Publisher):  # type: ignore[no-untyped-def]
    async def attempt() -> bool:
        try:
            await publisher.connect()
        except (OSError, NatsError, TimeoutError):
            await asyncio.sleep(0.05)
            return False
        return True

    return attempt


async def _true(value: bool) -> bool:
    return value


class Blackhole:
    """A TCP proxy to ``upstream`` that, once ``silent``, swallows what both sides send: a peer
    gone without a FIN or an RST. New connections are forwarded again once it is not."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.silent = upstream, False
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if not self.silent:
                    dst.write(data)

        pipes = [
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        for end in (writer, up_writer):
            end.close()
            with contextlib.suppress(Exception):
                await end.wait_closed()

    async def close(self) -> None:
        for end in self.writers:
            end.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_broker_gone_silent_fails_the_batch_in_time_and_is_connected_again(
    stream: Stream,
) -> None:
    upstream = urlsplit(nats_url())
    proxy = Blackhole((upstream.hostname or "127.0.0.1", upstream.port or 4222))
    publisher = Publisher(f"nats://127.0.0.1:{await proxy.start()}")
    try:
        await add_stream(publisher, stream.name, stream.prefix)
        first = [(f"{stream.prefix}.p.t", "1", b"{}")]
        assert await publisher.publish(first, timeout_s=5) == [STORED]
        proxy.silent = True  # the connection stays open; nothing passes any more
        lost = [(f"{stream.prefix}.p.t", "2", b"{}")]
        assert await publisher.publish(lost, timeout_s=0.5) == [PENDING]
        assert not publisher.connected
        proxy.silent = False
        again = [*first, *lost]
        assert await publisher.publish(again, timeout_s=5) == [DUPLICATE, STORED]
        assert publisher.connections == 2
    finally:
        await publisher.close()
        await proxy.close()
