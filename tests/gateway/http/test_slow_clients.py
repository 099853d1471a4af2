"""Slow and greedy clients are cut off: 3,000 HTTP connections that trickle their headers or
never finish a declared body are all closed within the configured timeouts while a normal client
is served throughout, and nothing of the cut-off requests is stored; past the connection cap a
new connection is refused at once; gRPC connections are recycled at their maximum age."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest

from gateway.config import Settings
from gateway.pb import gateway_pb2_grpc
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from tests.harness import GatewayProcess, eventually, provision, started, stored_events

SLOW = 3000
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0


@pytest.fixture
def descriptors() -> Iterator[int]:
    """Raise this process's (and so the gateway child's) descriptor limit for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * SLOW + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def closed(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    """Read until the server closes the connection: when it did (monotonic), what it sent."""
    received = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            received += chunk
    return time.monotonic(), received


async def test_slow_connections_are_cut_off_while_a_normal_client_is_served(
    tmp_path: Path, descriptors: int
) -> None:
    if descriptors < 2 * SLOW + 200:
        pytest.skip(f"needs {2 * SLOW + 200} descriptors, the hard limit is {descriptors}")
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    project_id, key, _ = await provision(url)
    proc = GatewayProcess(
        url,
        env={
            "EVENTGW_LOG_LEVEL": "warning",
            "EVENTGW_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
            "EVENTGW_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S),
        },
    )
    await asyncio.to_thread(proc.start)
    try:
        served = await _barrage(proc, key)
    finally:
        await asyncio.to_thread(proc.terminate)
    stored = await stored_events(url, project_id)
    assert {e.name for e in stored} == {"normal"}, "a cut-off request was stored"
    assert len(stored) == served


async def _barrage(proc: GatewayProcess, key: str) -> int:
    """Run the slow connections against ``proc``; how many normal requests were served."""
    head = (
        "POST /api/v1/events HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\n"
    )
    writers: list[asyncio.StreamWriter] = []
    waits: list[asyncio.Task[tuple[float, bytes]]] = []
    opened: list[float] = []
    stop = asyncio.Event()
    latencies: list[float] = []

    async def normal_client() -> None:
        # One kept-alive client sending an event every 20 ms throughout: all must be served.
        n = 0
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                body = {"external_user_id": "u", "name": "normal", "event_id": f"normal-{n}"}
                started_at = time.perf_counter()
                async with http.post(
                    proc.http_url + "/api/v1/events",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                ) as r:
                    assert r.status == 202, await r.text()
                latencies.append(time.perf_counter() - started_at)
                n += 1
                await asyncio.sleep(0.02)

    normal = asyncio.create_task(normal_client())
    await asyncio.sleep(0.5)
    baseline = len(latencies)
    for i in range(SLOW):
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.http_port)
        if i % 2:  # headers trickled, never finished
            writer.write(head.encode()[:40])
        else:  # headers complete, one byte of a declared 100 kB body
            body = orjson.dumps({"external_user_id": "s", "name": "slow", "event_id": f"slow-{i}"})
            writer.write(f"{head}Content-Length: 100000\r\n\r\n".encode() + body[:1])
        writers.append(writer)
        opened.append(time.monotonic())
        waits.append(asyncio.create_task(closed(reader)))

    async def trickle() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.25)
            for i, writer in enumerate(writers):
                if i % 2 and not writer.is_closing():
                    writer.write(b"X")

    trickler = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(60):  # bounds a hang only
            answers = await asyncio.gather(*waits)
    finally:
        stop.set()
        await normal
        trickler.cancel()
        for writer in writers:
            writer.close()
    held = [end - start for start, (end, _) in zip(opened, answers, strict=True)]
    # Trickled headers: closed without an answer. A stalled body: answered in VibeFollow's
    # envelope with its retryable status (503 there; 408 where a dialect has it), then closed.
    assert all(not sent for _, sent in answers[1::2])
    for _, sent in answers[0::2]:
        assert sent.startswith(b"HTTP/1.1 503 "), sent[:100]
        assert b"Request body not received within 2 s" in sent, sent
    during = latencies[baseline:]
    print(
        f"\n{SLOW} slow connections closed after {min(held):.1f}-{max(held):.1f} s"
        f" (header and body timeouts {HEADER_TIMEOUT_S:g} s);"
        f" normal client: {len(latencies)} requests, median"
        f" {statistics.median(latencies[:baseline]) * 1000:.1f} ms before,"
        f" {statistics.median(during) * 1000:.1f} ms during,"
        f" max {max(during) * 1000:.1f} ms during"
    )
    assert during, "the normal client was not served during the barrage"
    return len(latencies)


async def test_connections_past_the_cap_are_refused_at_once(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, max_connections=20)
    async with started(settings) as gw:
        held = [await asyncio.open_connection("127.0.0.1", gw.bound.http_port) for _ in range(20)]
        await asyncio.sleep(0.1)  # accepted by the server
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.bound.http_port)
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "unavailable"
        writer.close()
        for _, w in held[:5]:
            w.close()
        await asyncio.sleep(0.1)
        async with (
            aiohttp.ClientSession() as http,
            http.get(gw.http_url + "/healthz") as r,
        ):
            assert r.status == 200
        for _, w in held[5:]:
            w.close()


async def test_grpc_connections_are_recycled_at_their_maximum_age(sqlite_url: str) -> None:
    settings = Settings(
        database_url=sqlite_url,
        grpc_max_connection_age_seconds=0.5,
        grpc_max_connection_age_grace_seconds=0.5,
    )
    async with (
        started(settings) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        auth = [("authorization", f"Bearer {gw.api_key}")]
        await stub.SubmitBatch(SubmitBatchRequest(), metadata=auth)
        assert channel.get_state() == grpc.ChannelConnectivity.READY

        async def let_go() -> bool:  # GOAWAY: the channel drops to IDLE until used again
            return channel.get_state() != grpc.ChannelConnectivity.READY

        await eventually(let_go, limit_s=30)
        await stub.SubmitBatch(SubmitBatchRequest(), metadata=auth)  # and reconnects


@contextlib.asynccontextmanager
async def pinging(settings: Settings) -> AsyncIterator[grpc.aio.Channel]:
    """A gateway on ``settings`` and a channel that pings it every 100 ms, after one call."""
    pinger = [
        ("grpc.keepalive_time_ms", 100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    async with (
        started(settings) as gw,
        grpc.aio.insecure_channel(gw.grpc_target, options=pinger) as channel,
    ):
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        auth = [("authorization", f"Bearer {gw.api_key}")]
        await stub.SubmitBatch(SubmitBatchRequest(), metadata=auth)
        yield channel


async def test_a_grpc_client_pinging_too_often_is_sent_away(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, grpc_min_ping_interval_seconds=10)
    async with pinging(settings) as channel:

        async def sent_away() -> bool:
            return channel.get_state() != grpc.ChannelConnectivity.READY

        await eventually(sent_away, limit_s=30)


async def test_a_grpc_client_pinging_within_the_configured_interval_is_kept(
    sqlite_url: str,
) -> None:
    # The same pinger, allowed by the setting: the connection is never sent away.
    settings = Settings(database_url=sqlite_url, grpc_min_ping_interval_seconds=0.05)
    async with pinging(settings) as channel:
        states = []
        for _ in range(30):  # ~3 s: some 30 pings, far more than the 2 strikes allowed
            await asyncio.sleep(0.1)
            states.append(channel.get_state())
        assert set(states) == {grpc.ChannelConnectivity.READY}
