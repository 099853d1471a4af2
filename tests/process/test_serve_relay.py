"""``eventgw serve --relay``: the supervisor runs the outbox relay beside the worker, so what the
gateway acknowledges reaches JetStream without a separate process; SIGTERM stops both. With
``--relay-failed-events`` the relay publishes what the gateway refused too, and counts it on the
workers' ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest

from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest, SubmitBatchResponse
from tests.harness import ROOT, eventually, free_ports, provision
from tests.jetstream import Stream, nats_url

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def log_says(log: Path, text: str) -> bool:
    return text in await asyncio.to_thread(log.read_text, errors="replace")


async def has_messages(stream: Stream, n: int) -> bool:
    return await stream.count() >= n


@contextlib.asynccontextmanager
async def serve_with_relay(
    sqlite_url: str, stream: Stream, tmp_path: Path, *flags: str
) -> AsyncIterator[tuple[int, int]]:
    """``eventgw serve --relay`` on free ports until the block ends (then SIGTERM: exit code 0);
    its (gRPC, ops) ports."""
    (http, grpc_port, ops_port), log = free_ports(3), tmp_path / "serve.log"
    env = {
        **os.environ,
        "EVENTGW_NATS_STREAM": stream.name,
        "EVENTGW_NATS_SUBJECT_PREFIX": stream.prefix,
        "EVENTGW_RELAY_POLL_SECONDS": "0.05",
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gateway", "serve", "--relay", "--nats-url", nats_url()),
            *("--database-url", sqlite_url, "--http", f"127.0.0.1:{http}"),
            *("--grpc", f"127.0.0.1:{grpc_port}", "--ops", f"127.0.0.1:{ops_port}"),
            *flags,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        await eventually(functools.partial(log_says, log, "with the outbox relay"))
        yield grpc_port, ops_port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await proc.wait()
    assert code == 0


async def submit(grpc_port: int, key: str, events: list[Event]) -> SubmitBatchResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        response: SubmitBatchResponse = await stub.SubmitBatch(
            SubmitBatchRequest(events=events), metadata=[("authorization", f"Bearer {key}")]
        )
        return response


async def test_serve_with_relay_publishes_what_it_acknowledges(
    sqlite_url: str, stream: Stream, tmp_path: Path
) -> None:
    _, key, _ = await provision(sqlite_url)
    async with serve_with_relay(sqlite_url, stream, tmp_path) as (grpc_port, _):
        response = await submit(
            grpc_port, key, [Event(id=f"e{i}", name="signup") for i in range(50)]
        )
        assert response.accepted == 50
        await eventually(functools.partial(has_messages, stream, 50))
    messages = await stream.read()
    assert sorted(m.headers["Nats-Msg-Id"].split(":")[1] for m in messages if m.headers) == sorted(
        f"e{i}" for i in range(50)
    )


@pytest.mark.postgres
async def test_serve_with_two_relay_processes_on_postgresql_publishes_each_event_once(
    postgres_url: str, stream: Stream, tmp_path: Path
) -> None:
    _, key, _ = await provision(postgres_url)
    flags = ("--relay-processes", "2")
    async with serve_with_relay(postgres_url, stream, tmp_path, *flags) as (grpc_port, _):
        log = tmp_path / "serve.log"
        for name in ("relay-1 started", "relay-2 started"):
            assert await log_says(log, name)
        for batch in range(6):
            events = [Event(id=f"e{batch}-{i}", name="signup") for i in range(500)]
            assert (await submit(grpc_port, key, events)).accepted == 500
        await eventually(functools.partial(has_messages, stream, 3_000))
        await asyncio.sleep(0.5)  # a copy, had there been one, would have arrived by now
    ids = [m.headers["Nats-Msg-Id"] for m in await stream.read() if m.headers]
    assert len(ids) == len(set(ids)) == 3_000


async def metric(ops_port: int, name: str) -> float | None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{ops_port}/metrics") as reply,
    ):
        for line in (await reply.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


async def counted(ops_port: int, name: str, value: float) -> bool:
    return await metric(ops_port, name) == value


async def test_serve_with_relay_failed_events_publishes_the_refused_and_counts_them(
    sqlite_url: str, stream: Stream, tmp_path: Path
) -> None:
    project, key, _ = await provision(sqlite_url)
    flags = ("--relay-failed-events",)
    async with serve_with_relay(sqlite_url, stream, tmp_path, *flags) as (grpc_port, ops_port):
        response = await submit(grpc_port, key, [Event(id="ok", name="signup"), Event(id="bad")])
        assert (response.accepted, response.rejected) == (1, 1)
        await eventually(functools.partial(has_messages, stream, 2))
        name = "eventgw_relay_failed_published_total"
        await eventually(functools.partial(counted, ops_port, name, 1.0))
    messages = {m.subject: m for m in await stream.read()}
    failed = messages.pop(f"{stream.prefix}.failed.{project}")
    assert orjson.loads(failed.data)["field"] == "name"
    assert list(messages) == [f"{stream.prefix}.{project}.track"]
