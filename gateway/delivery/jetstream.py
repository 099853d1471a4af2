"""The relay's connection to NATS JetStream: publishes a batch of messages as pre-built ``HPUB``
frames and reads the broker's acks, one connection of its own per relay (``Publisher``).

A general client spends its time per message: nats-py validates each subject, builds each header,
queues each ack as a ``Msg`` object and hands it to a callback task, ~20 µs of CPU per published
event, more than the gateway spends ingesting one. The relay needs only a small part of the
protocol: ``CONNECT`` (user and password or token from the URL, TLS for ``tls://`` or when the
server requires it), one subscription for replies, ``HPUB`` with a ``Nats-Msg-Id`` header, and
the answers read for ``"error"`` and ``"duplicate"`` only. A batch is written as one buffer; each
message asks for its ack at ``<inbox>.<batch>x<index>``. Stream management (``stream_info``,
``add_stream``) is a JetStream API request on the same connection.

A lost connection fails the batch in flight (what was not acked stays undelivered and is published
again); the next call connects again. The broker's duplicate window makes the copies harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

log = logging.getLogger(__name__)

# What became of each message of a batch (``publish`` returns these very strings).
PENDING, STORED, DUPLICATE, FAILED, NO_STREAM = "pending", "stored", "dup", "failed", "none"
ACKED = (STORED, DUPLICATE)
STREAM_NOT_FOUND = 10059  # JetStream's error code
_CRLF = b"\r\n"
_READ_SIZE = 1 << 16
# A plain "stored" ack to the reply subject <inbox>.<batch>x<index>: no error, no duplicate.
_STORED_ACK = re.compile(rb'MSG ([^ ]+\.)(\d+)x(\d+) \d+ \d+\r\n\{"stream":"[^"]*","seq":\d+\}\r\n')


class NatsError(Exception):
    """The broker refused the connection or a request, or did not answer in time."""


class Batch:
    """The answers to one batch of messages, as its acks arrive."""

    __slots__ = ("answers", "done", "number", "waiting")

    def __init__(self, number: int, size: int) -> None:
        self.number = number
        self.answers = [PENDING] * size
        self.waiting = size
        self.done = asyncio.Event()


class _Request:
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()


class Publisher:
    """One NATS connection for ``url`` (``nats://`` or ``tls://``, optionally ``user:pass@`` or
    ``token@``); connects on first use and again after a loss."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "eventgw-relay",
        connect_timeout_s: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"nats", "tls"}:
            raise ValueError(f"{url!r}: the relay speaks nats:// and tls://")
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 4222
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self._tls = parts.scheme == "tls"
        self._ssl_context = ssl_context
        self._auth: dict[str, str] = {}
        if parts.username is not None and parts.password is not None:
            self._auth = {"user": unquote(parts.username), "pass": unquote(parts.password)}
        elif parts.username is not None:
            self._auth = {"auth_token": unquote(parts.username)}
        self.max_payload = 1 << 20
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._inbox = b""
        self._pong: asyncio.Future[None] | None = None
        self._batch = 0
        self._batches: dict[int, Batch] = {}
        self._requests: dict[bytes, _Request] = {}
        self._next_request = 0
        self._lost: asyncio.Event = asyncio.Event()
        self.connections = 0  # how many times it connected (1 + reconnections)
        self._connecting = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._lost.is_set()

    # -- connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect unless connected (``NatsError``/``OSError`` when the broker does not answer)."""
        if self.connected:
            return
        async with self._connecting:  # one connection, however many callers wait for it
            if not self.connected:
                await self._open()

    async def _open(self) -> None:
        await self._close_transport()
        async with asyncio.timeout(self.connect_timeout_s):
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=_READ_SIZE)
            try:
                info = await self._handshake(reader, writer)
            except BaseException:
                writer.close()
                raise
        self.max_payload = int(info.get("max_payload", self.max_payload))
        self._lost = asyncio.Event()
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader, writer, self._lost))
        self.connections += 1
        if self.connections > 1:
            log.info("NATS %s: reconnected", self.host)

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any]:
        line = await reader.readline()
        if not line.startswith(b"INFO "):
            raise NatsError(f"not a NATS server at {self.host}:{self.port}: {line[:80]!r}")
        info: dict[str, Any] = orjson.loads(line[5:])
        if self._tls or info.get("tls_required"):
            context = self._ssl_context or ssl.create_default_context()
            await writer.start_tls(context, server_hostname=self.host)
        options = {
            "verbose": False,
            "pedantic": False,
            "tls_required": self._tls or bool(info.get("tls_required")),
            "name": self.name,
            "lang": "python",
            "version": "eventgw",
            "protocol": 1,
            "headers": True,
            "no_responders": True,
            **self._auth,
        }
        self._inbox = b"_INBOX.%s" % secrets.token_hex(11).encode()
        writer.write(b"CONNECT %s\r\nPING\r\n" % orjson.dumps(options))
        await writer.drain()
        while True:
            answer = await reader.readline()
            if answer.startswith(b"PONG"):
                break
            if answer.startswith(b"-ERR"):
                raise NatsError(f"NATS {self.host} refused the connection: {answer[5:].strip()!r}")
            if not answer:
                raise NatsError(f"NATS {self.host} closed the connection")
        writer.write(b"SUB %s.* 1\r\n" % self._inbox)
        return info

    async def close(self) -> None:
        await self._close_transport()

    async def _close_transport(self) -> None:
        task, writer = self._reader_task, self._writer
        self._reader_task = self._writer = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self, messages: Sequence[tuple[str, str, bytes]], *, timeout_s: float
    ) -> list[str]:
        """Publish ``(subject, msg_id, payload)`` messages in order, then wait up to
        ``timeout_s`` for their acks: one answer per message (``STORED``, ``DUPLICATE``,
        ``FAILED``: refused, ``NO_STREAM``: no stream listens, ``PENDING``: no answer)."""
        await self.connect()
        return await self.confirm(self.send(messages), timeout_s=timeout_s)

    def send(self, messages: Sequence[tuple[str, str, bytes]]) -> Batch:
        """Write ``messages`` in order without waiting (after ``connect``); ``confirm`` awaits
        their acks. Several batches may be in flight at once."""
        writer = self._writer
        if writer is None or self._lost.is_set():
            raise ConnectionError("not connected to NATS")
        self._batch += 1
        batch = self._batches[self._batch] = Batch(self._batch, len(messages))
        answers = batch.answers
        reply = b"%s.%dx" % (self._inbox, self._batch)
        limit, frames = self.max_payload, []
        for index, (subject, msg_id, payload) in enumerate(messages):
            header = b"NATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n" % msg_id.encode()
            size = len(header) + len(payload)
            if size > limit:
                log.error("event %s is %d bytes, over the broker's max_payload", msg_id, size)
                answers[index] = FAILED
                batch.waiting -= 1
                continue
            frames.append(
                b"HPUB %s %s%d %d %d\r\n%s%s\r\n"
                % (subject.encode(), reply, index, len(header), size, header, payload)
            )
        if batch.waiting > 0:
            writer.write(b"".join(frames))
        else:
            batch.done.set()
        return batch

    async def confirm(self, batch: Batch, *, timeout_s: float) -> list[str]:
        """The answers to ``batch`` once all came, the connection was lost, or ``timeout_s``
        passed (``PENDING`` for those that did not come). A batch not fully answered in time
        leaves the connection for lost: a peer gone silent (no FIN, no RST) would otherwise keep
        taking frames for as long as TCP retransmits; the next call connects again."""
        lost = self._lost
        try:
            if not batch.done.is_set():
                try:
                    async with asyncio.timeout(timeout_s):
                        if self._writer is not None:
                            await self._writer.drain()  # a full send buffer waits here
                        waiting = asyncio.ensure_future(batch.done.wait())
                        losing = asyncio.ensure_future(lost.wait())
                        try:
                            first = asyncio.FIRST_COMPLETED
                            await asyncio.wait({waiting, losing}, return_when=first)
                        finally:
                            waiting.cancel()
                            losing.cancel()
                except (TimeoutError, ConnectionError) as exc:
                    if not lost.is_set():
                        log.warning("NATS %s: %s; connecting again", self.host, _why(exc))
                        lost.set()
            return batch.answers
        finally:
            self._batches.pop(batch.number, None)

    def _stored(self, number: int, index: int) -> None:
        batch = self._batches.get(number)
        if batch is not None and batch.answers[index] is PENDING:
            batch.answers[index] = STORED
            batch.waiting -= 1
            if batch.waiting <= 0:
                batch.done.set()

    def _on_ack(self, token: bytes, header: bytes | None, data: bytes) -> None:
        number, _, index = token.partition(b"x")
        batch = self._batches.get(int(number))
        if batch is None:
            return  # a batch given up on
        answers, i = batch.answers, int(index)
        if answers[i] is not PENDING:
            return
        if header is not None and header[9:12] == b"503":
            answer = NO_STREAM  # no responders: no stream listens on the subject
        elif b'"error"' in data:
            answer = FAILED
            log.warning("JetStream refused a message: %s", data[:200])
        elif b'"duplicate"' in data and orjson.loads(data).get("duplicate") is True:
            answer = DUPLICATE
        else:
            answer = STORED
        answers[i] = answer
        batch.waiting -= 1
        if batch.waiting <= 0:
            batch.done.set()

    # -- requests (stream management) ----------------------------------------------------------

    async def request(self, subject: str, payload: bytes, *, timeout_s: float = 5.0) -> bytes:
        await self.connect()
        assert self._writer is not None
        self._next_request += 1
        token = b"r%d" % self._next_request
        pending = self._requests[token] = _Request()
        self._writer.write(
            b"PUB %s %s.%s %d\r\n%s\r\n"
            % (subject.encode(), self._inbox, token, len(payload), payload)
        )
        try:
            async with asyncio.timeout(timeout_s):
                return await pending.answer
        except TimeoutError:
            raise NatsError(f"no answer to {subject} within {timeout_s:g}s") from None
        finally:
            self._requests.pop(token, None)

    async def api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API call (``$JS.API.<subject>``): its JSON answer, errors included."""
        raw = await self.request(f"$JS.API.{subject}", orjson.dumps(body) if body else b"")
        answer: dict[str, Any] = orjson.loads(raw) if raw else {}
        return answer

    # -- reading -------------------------------------------------------------------------------

    async def _read(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lost: asyncio.Event
    ) -> None:
        buf, prefix = b"", self._inbox + b"."
        try:
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    raise ConnectionError("the broker closed the connection")
                buf = self._parse(buf + data if buf else data, prefix, writer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not lost.is_set():
                log.warning("NATS %s: connection lost: %r", self.host, exc)
        finally:
            lost.set()
            for pending in self._requests.values():
                if not pending.answer.done():
                    pending.answer.set_exception(NatsError("connection lost"))

    def _parse(self, buf: bytes, prefix: bytes, writer: asyncio.StreamWriter) -> bytes:
        """Handle every complete operation in ``buf``; what is left of it."""
        pos, size, stored = 0, len(buf), _STORED_ACK.match
        while pos < size:
            ack = stored(buf, pos)
            if ack is not None and ack.group(1) == prefix:  # the common case, read at once
                self._stored(int(ack.group(2)), int(ack.group(3)))
                pos = ack.end()
                continue
            end = buf.find(_CRLF, pos)
            if end < 0:
                break
            line = buf[pos:end]
            if line.startswith(b"MSG "):
                fields = line.split(b" ")
                length = int(fields[-1])
                stop = end + 2 + length
                if stop + 2 > size:
                    break
                self._dispatch(fields[1], prefix, None, buf[end + 2 : stop])
                pos = stop + 2
            elif line.startswith(b"HMSG "):
                fields = line.split(b" ")
                header_length, length = int(fields[-2]), int(fields[-1])
                stop = end + 2 + length
                if stop + 2 > size:
                    break
                body = buf[end + 2 : stop]
                self._dispatch(fields[1], prefix, body[:header_length], body[header_length:])
                pos = stop + 2
            else:
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    log.warning("NATS %s: %s", self.host, line[5:].decode(errors="replace"))
                pos = end + 2  # +OK, PONG, INFO: nothing to do
        return buf[pos:]

    def _dispatch(self, subject: bytes, prefix: bytes, header: bytes | None, data: bytes) -> None:
        if not subject.startswith(prefix):
            return
        token = subject[len(prefix) :]
        if token[:1] == b"r":
            pending = self._requests.get(token)
            if pending is not None and not pending.answer.done():
                if header is not None and header[9:12] == b"503":
                    pending.answer.set_exception(NatsError("no responders (JetStream disabled?)"))
                else:
                    pending.answer.set_result(data)
        else:
            self._on_ack(token, header, data)


def _why(exc: BaseException) -> str:
    return "no answer in time" if isinstance(exc, TimeoutError) else f"publishing failed: {exc!r}"
