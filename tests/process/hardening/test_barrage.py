"""The barrage: garbage, oversize bodies, compression bombs and junk gRPC against a real server.

Every REST route (enumerated from the registry) gets malformed JSON, empty bodies, ``null``,
scalars, junk arrays, 100,000-deep nesting, invalid UTF-8, ``NaN``/``Infinity``, a 6 MiB string,
wrong types and missing fields, with and without credentials: every answer is a JSON body in the
dialect's envelope with a status below 500 (a 4xx, or a per-item endpoint's 200/207 naming each
bad item), never a traceback. Then a 1 GiB gzip bomb per route, generated on the fly, is refused
with 413 while the server's RSS is sampled. gRPC gets an oversize message, garbage bytes and
100,000-deep nesting. Finally the server is still healthy, stored no junk and accepts events.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import grpc
import orjson
import psutil
import pytest

from gateway.config import Settings
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import EventStatus, SubmitBatchRequest
from gateway.rpc import SERVICE
from tests.process.hardening.conftest import (
    BODY_ROUTE_IDS,
    BODY_ROUTES,
    DIALECTS,
    ROUTE_IDS,
    ROUTES,
    Server,
    post_valid,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULTS = Settings()
# Routes whose dialect answers per item: junk items are errors inside a 2xx, stored nothing.
PER_ITEM = {
    ("databuddy", "/batch"),
    ("vibefollow", "/api/v1/events/bulk"),
    ("vibefollow", "/api/v1/users/bulk"),
}
# Databuddy's /track takes "an array of at most 100" events: an empty one is a no-op success.
NO_OP = {("/track", "empty_array")}
RSS_LIMIT = 600 * 1_000_000
# What the bombs measured, for the summary at the end of the module.
MEASURED: dict[str, Any] = {}


def junk_bodies(key: str) -> dict[str, bytes]:
    deep_event = {"event": "e", "name": "n", "event_name": "n", "user_id": "u"}
    wrong_types: list[Any] = [
        {"token": key, "events": "x"},
        {"token": key, "events": [1, None, "x", [], True]},
        {
            "token": key,
            "events": [
                {"event": 5, "distinctId": [], "name": 7, "event_name": {}, "user_id": 3}
                | {"external_user_id": False, "properties": "x", "time": "later"}
            ],
        },
        {
            "token": key,
            "event": ["x"],
            "name": 5,
            "event_name": None,
            "user_id": 1.5,
            "external_user_id": {},
            "properties": [],
            "timestamp": "yesterday",
        },
        [{"type": 5, "payload": "x"}, {"type": "track", "payload": {"name": 5, "path": []}}],
        [{"type": "outgoing_link", "payload": {"href": 5}}, {"type": "nope"}, "x", None],
        {"token": 123},
        {"token": "", "events": []},
        {"token": key, "events": []},
        {"token": key, "events": [{}]},
        {"token": key},
        {},
        [{}],
        [{"name": None}],
        {"events": [{"properties": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}]},
        {**deep_event, "token": key, "properties": "not an object", "distinctId": 5},
    ]
    bodies = {
        "malformed": b'{"token": "x", "events": [',
        "empty": b"",
        "whitespace": b" \n\t ",
        "null": b"null",
        "number": b"42",
        "string": b'"x"',
        "true": b"true",
        "empty_array": b"[]",
        "array_of_numbers": b"[1,2]",
        "junk_array": b'[null, "x", [], {}, 1.5, true, -1, [[[]]]]',
        "deep_array": b"[" * 100_000,
        "deep_object": b'{"a":' * 100_000,
        "deep_closed": b"[" * 5000 + b"]" * 5000,
        "invalid_utf8": b'{"token": "\xff\xfe", "event": "\xc3\x28"}',
        "utf16": '{"token": "x"}'.encode("utf-16"),
        "nan": b'{"token": "k", "event": "e", "time": NaN}',
        "infinity": b"[Infinity, -Infinity]",
        "huge_number": b'{"time": 1e999999}',
        "big_integer": b'{"time": 123456789012345678901234567890}',
        "huge_string": b'"' + b"x" * (6 * MiB) + b'"',
        "big_field": orjson.dumps({**deep_event, "token": key, "name": "x" * (3 * MiB)}),
        "many_keys": orjson.dumps({**deep_event, "properties": {str(i): i for i in range(5000)}}),
        # One past every dialect's events-per-batch limit (100 / 500 / 1000).
        "too_many_events": orjson.dumps({"token": key, "events": [{"event": "e"}] * 1001}),
        "too_many_items": orjson.dumps([{"name": "x", "path": "/"}] * 101),
        "nul_bytes": b"\x00" * 1000,
        "binary": bytes(range(256)) * 4,
    }
    for i, value in enumerate(wrong_types):
        bodies[f"wrong_types_{i}"] = orjson.dumps(value)
    return bodies


def assert_clean(status: int, headers: Any, body: bytes, what: str) -> Any:
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    assert headers.get("Content-Type", "").startswith("application/json"), what
    assert b"Traceback" not in body, what
    return orjson.loads(body)


async def send(
    session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str], **kw: Any
) -> tuple[int, Any, bytes]:
    if isinstance(body, bytes) and len(body) > MiB:
        body = io.BytesIO(body)  # aiohttp warns about large raw bytes bodies
    async with session.post(url, data=body, headers=headers, **kw) as resp:
        return resp.status, resp.headers, await resp.read()


@pytest.mark.parametrize(("dialect", "method", "path"), ROUTES, ids=ROUTE_IDS)
async def test_junk_is_answered_4xx_in_the_dialect_envelope(
    server: Server, dialect: str, method: str, path: str
) -> None:
    url = server.http_url + path
    keyed = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    query = {"website_id": server.project_id}
    async with aiohttp.ClientSession() as session:
        for name, body in junk_bodies(server.key).items():
            for headers, params in ((keyed, query), ({"Content-Type": "application/json"}, {})):
                status, got, raw = await send(session, url, body, headers, params=params)
                doc = assert_clean(status, got, raw, f"{path} {name}")
                if status < 300 and ((dialect, path) in PER_ITEM or (path, name) in NO_OP):
                    continue  # per-item errors, checked below (nothing stored)
                assert 400 <= status < 500, f"{path} {name}: {status} {raw[:200]!r}"
                assert doc, f"{path} {name}: an empty envelope"
        # Content types and encodings the dialects refuse.
        for headers in (
            {**keyed, "Content-Type": "application/x-www-form-urlencoded"},
            {**keyed, "Content-Type": "application/xml"},
            {**keyed, "Content-Encoding": "br"},
            {**keyed, "Content-Encoding": "gzip"},  # not gzip at all
            {**keyed, "Content-Encoding": "deflate"},
        ):
            status, got, raw = await send(session, url, b"{}", headers, params=query)
            assert_clean(status, got, raw, f"{path} {headers}")
            assert 400 <= status < 500
        # A truncated gzip stream.
        partial = zlib.compress(orjson.dumps({"events": [{}] * 1000}), wbits=31)[:50]
        status, got, raw = await send(
            session, url, partial, {**keyed, "Content-Encoding": "gzip"}, params=query
        )
        assert_clean(status, got, raw, f"{path} truncated gzip")
        assert 400 <= status < 500


def oversize_status(dialect: str) -> int:
    """413, but 400 where the vendor answers an oversize request so (the Segment spec)."""
    return 400 if dialect == "segment" else 413


@pytest.mark.parametrize(("dialect", "method", "path"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
async def test_oversize_bodies_are_413_naming_the_limit(
    server: Server, dialect: str, method: str, path: str
) -> None:
    from adapters import default_registry

    route = default_registry().routes[(method, path)][1]
    limit = route.max_body_bytes or DEFAULTS.max_body_bytes
    url = server.http_url + path
    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    body = b'{"x": "' + b"x" * limit + b'"}'

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for start in range(0, len(body), MiB):
            yield body[start : start + MiB]

    async with aiohttp.ClientSession() as session:
        for data in (body, chunked()):
            status, got, raw = await send(session, url, data, headers)
            assert_clean(status, got, raw, path)
            assert status == oversize_status(dialect), (path, status, raw[:200])
            assert str(limit) in raw.decode(), raw
        # Just under the limit is read (and refused for its content, not its size).
        fits = b'{"x": "' + b"x" * (limit - 100) + b'"}'
        status, got, raw = await send(session, url, fits, headers)
        assert_clean(status, got, raw, path)
        assert status != 413


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/batch", 405),
        ("PUT", "/track", 405),
        ("DELETE", "/api/v1/batch", 405),
        ("GET", "/v1/events/batch", 405),
        ("PATCH", "/api/v1/events", 405),
        ("GET", "/", 405),
        ("POST", "/nope", 404),
        ("GET", "/v1/nope", 404),
        ("POST", "/api/v1/nope", 404),
        ("POST", "/api/v1/events/nope", 404),
        ("POST", "/healthz/x", 404),
        ("POST", "/%00%ff", 404),
    ],
)
async def test_wrong_method_and_unknown_path_are_json(
    server: Server, method: str, path: str, status: int
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.http_url + path, data=b"{}") as resp,
    ):
        raw = await resp.read()
        assert resp.status == status, (method, path, resp.status, raw)
        assert_clean(resp.status, resp.headers, raw, path)
        if status == 405:
            assert "POST" in resp.headers["Allow"]


# -- compression bombs ----------------------------------------------------------------------------


class RssSampler:
    """Samples the resident set size of a process and its children in a thread."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.baseline = self.sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for proc in (self.process, *self.process.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


class Bomb:
    """1 GiB of zeros, gzip- (or zlib-) compressed on the fly in 1 MiB blocks; stops as soon as
    ``stop`` is set (the response arrived). Counts what it generated and sent."""

    def __init__(self, *, total: int = GiB, wbits: int = 31) -> None:
        self.total = total
        self.wbits = wbits
        self.stop = asyncio.Event()
        self.inflated = 0  # decompressed bytes generated
        self.sent = 0  # compressed bytes handed to the connection

    async def stream(self) -> AsyncIterator[bytes]:
        compressor = zlib.compressobj(9, zlib.DEFLATED, self.wbits)
        block = bytes(MiB)
        while self.inflated < self.total and not self.stop.is_set():
            chunk = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
            self.inflated += len(block)
            self.sent += len(chunk)
            yield chunk
            await asyncio.sleep(0)  # let the response be read
        if not self.stop.is_set():
            tail = compressor.flush()
            self.sent += len(tail)
            yield tail


async def throw_bomb(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], bomb: Bomb
) -> tuple[int, bytes]:
    try:
        async with session.post(url, data=bomb.stream(), headers=headers) as resp:
            bomb.stop.set()
            return resp.status, await resp.read()
    finally:
        bomb.stop.set()


@pytest.fixture(scope="module")
def rss(server: Server) -> Iterator[RssSampler]:
    assert server.proc.proc is not None
    with RssSampler(server.proc.proc.pid) as sampler:
        MEASURED["baseline_rss"] = sampler.baseline
        yield sampler


@pytest.mark.parametrize(("dialect", "method", "path"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
async def test_gzip_bomb_is_413_while_streaming(
    server: Server, rss: RssSampler, dialect: str, method: str, path: str
) -> None:
    headers = {
        "Authorization": f"Bearer {server.key}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    bomb = Bomb()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        status, raw = await throw_bomb(session, server.http_url + path, headers, bomb)
    doc = assert_clean(status, {"Content-Type": "application/json"}, raw, path)
    assert status == oversize_status(dialect), (path, status, raw[:200])
    assert "ecompressed" in raw.decode(), doc  # the message names the decompressed limit
    # The server answered long before the bomb was spent.
    assert bomb.inflated < bomb.total, bomb.inflated
    MEASURED.setdefault("bombs", {})[path] = {"inflated": bomb.inflated, "sent": bomb.sent}
    MEASURED["peak_rss"] = rss.peak
    assert rss.peak < RSS_LIMIT, rss.peak


async def test_deflate_bomb_is_413(server: Server, rss: RssSampler) -> None:
    headers = {
        "Authorization": f"Bearer {server.key}",
        "Content-Type": "text/plain",
        "Content-Encoding": "deflate",
    }
    bomb = Bomb(wbits=15)
    async with aiohttp.ClientSession() as session:
        status, _ = await throw_bomb(session, server.http_url + "/v1/events/batch", headers, bomb)
    assert status == 413
    assert rss.peak < RSS_LIMIT, rss.peak


# -- gRPC -----------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def deep_request(levels: int) -> bytes:
    """A SubmitBatchRequest whose one event's properties nest ``levels`` Structs deep, encoded by
    hand (protobuf refuses to build it) in linear time: every wrapper is a prefix."""
    prefixes: list[bytes] = []
    inner = b"\x1a\x01x"  # Value.string_value = "x"
    size = len(inner)

    def wrap(head: bytes) -> None:
        nonlocal size
        prefix = head + _varint(size)
        prefixes.append(prefix)
        size += len(prefix)

    for level in range(levels):
        if level:
            wrap(b"\x2a")  # Value.struct_value
        wrap(b"\x0a\x01k\x12")  # Struct.FieldsEntry {key: "k", value: ...}
        wrap(b"\x0a")  # Struct.fields
    wrap(b"\x82\x01")  # Event.properties (field 16)
    wrap(b"\x12")  # SubmitBatchRequest.events
    return b"".join(reversed(prefixes)) + inner


def raw_method(channel: grpc.aio.Channel, name: str) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{name}", request_serializer=None, response_deserializer=None
    )


async def test_grpc_junk_is_invalid_argument_and_oversize_resource_exhausted(
    server: Server,
) -> None:
    metadata = (("authorization", f"Bearer {server.key}"),)
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        submit = raw_method(channel, "SubmitBatch")
        for junk in (b"\xff\xff\xff\xff", b"\x12\xff\xff\xff\xff\x0f", deep_request(100_000)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await submit(junk, metadata=metadata, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value

        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        big = SubmitBatchRequest(events=[Event(name="x", id="big", type=1)])
        big.events[0].extras["blob"] = "x" * (DEFAULTS.max_grpc_message_bytes + 1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitBatch(big, metadata=metadata, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        many = SubmitBatchRequest(
            events=[Event(name="x") for _ in range(DEFAULTS.max_grpc_batch_events + 1)]
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitBatch(many, metadata=metadata, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(DEFAULTS.max_grpc_batch_events) in (caught.value.details() or "")

        for bad_metadata in ((), (("authorization", "Bearer nope"),), (("authorization", "x"),)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.SubmitBatch(SubmitBatchRequest(), metadata=bad_metadata, timeout=30)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # A stream whose second message is garbage: INVALID_ARGUMENT, the first one answered.
        stream = channel.stream_stream(
            f"/{SERVICE}/SubmitStream", request_serializer=None, response_deserializer=None
        )
        call = stream(metadata=metadata, timeout=30)
        await call.write(SubmitBatchRequest().SerializeToString())
        await call.write(b"\xff\xff\xff")
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_grpc_junk_events_are_rejected_per_event(server: Server) -> None:
    metadata = (("authorization", f"Bearer {server.key}"),)
    big = Event(id="too-big", name="x")
    big.properties["blob"] = "x" * (DEFAULTS.max_event_bytes + 1)
    junk = [
        Event(id="no-name"),
        Event(id="long-name", name="x" * 5000),
        Event(id="x" * 600, name="long-id"),
        Event(id="other-project", name="x", project_id="00000000-0000-0000-0000-000000000000"),
        Event(id="bad-type", name="x", type=999),
        big,
    ]
    junk.append(Event(id="old", name="x"))
    junk[-1].occurred_at.seconds = 5
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        response = await stub.SubmitBatch(SubmitBatchRequest(events=junk), metadata=metadata)
    assert response.rejected == len(junk)
    assert [r.index for r in response.results] == list(range(len(junk)))
    assert {r.status for r in response.results} == {EventStatus.EVENT_STATUS_REJECTED}
    assert all(r.code and r.message for r in response.results)


# -- afterwards -----------------------------------------------------------------------------------


async def test_server_is_healthy_after_the_barrage_and_stored_no_junk(server: Server) -> None:
    assert server.alive()
    assert await server.stored_ids() == set(), "junk was stored"
    async with aiohttp.ClientSession() as session:
        for url in (server.http_url + "/healthz", server.ops_url + "/readyz"):
            async with session.get(url) as resp:
                assert resp.status == 200, url
        for dialect in DIALECTS:
            status, doc, _ = await post_valid(
                session, server.http_url, dialect, server.key, server.project_id
            )
            assert 200 <= status < 300, (dialect, status, doc)
    assert len(await server.stored_ids()) == len(DIALECTS)
    if "peak_rss" in MEASURED or "bombs" in MEASURED:
        print(f"\nhardening RSS/bombs: {orjson.dumps(MEASURED).decode()}")
