"""``eventgw serve --relay``: the supervisor runs the outbox relay beside the worker, so what the
gateway acknowledges reaches JetStream without a separate process; SIGTERM stops both."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from pathlib import Path

import grpc
import pytest

from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from tests.harness import ROOT, eventually, free_ports, provision
from tests.jetstream import Stream, nats_url

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def log_says(log: Path, text: str) -> bool:
    return text in await asyncio.to_thread(log.read_text, errors="replace")


async def has_messages(stream: Stream, n: int) -> bool:
    return await stream.count() >= n


async def test_serve_with_relay_publishes_what_it_acknowledges(
    sqlite_url: str, stream: Stream, tmp_path: Path
) -> None:
    _, key, _ = await provision(sqlite_url)
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
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        await eventually(functools.partial(log_says, log, "with the outbox relay"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = gateway_pb2_grpc.EventGatewayStub(channel)
            response = await stub.SubmitBatch(
                SubmitBatchRequest(events=[Event(id=f"e{i}", name="signup") for i in range(50)]),
                metadata=[("authorization", f"Bearer {key}")],
            )
        assert response.accepted == 50
        await eventually(functools.partial(has_messages, stream, 50))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await proc.wait()
    assert code == 0
    messages = await stream.read()
    assert sorted(m.headers["Nats-Msg-Id"].split(":")[1] for m in messages if m.headers) == sorted(
        f"e{i}" for i in range(50)
    )
