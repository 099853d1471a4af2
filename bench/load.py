"""The load generators of ``eventgw bench``: one scenario per process, gRPC or HTTP.

Each worker process opens its own connections, builds its requests from the templates of
:mod:`bench.payloads`, waits for the common start signal, keeps ``concurrency`` requests in flight
for a warm-up and then the scenario's duration, and reports what completed inside the measured
window (:mod:`bench.window`). Event ids are unique per run (worker, scenario, counter).

- ``grpc-batch``: unary ``SubmitBatch`` of ``GRPC_BATCH`` events, several calls in flight;
  ``grpc-batch-keyed`` (only when named) the same with an idempotency key per request and the
  answer's exceptions only, what the gateway's client sends (:mod:`bench.client`);
- ``grpc-stream``: ``SubmitStream``, batches pipelined on a few streams, ``STREAM_WINDOW`` each;
- ``databuddy-batch``: Databuddy ``POST /batch``, ``HTTP_BATCH`` tracker page views per request;
- ``track``: Databuddy ``POST /track``, one custom event per request.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing.queues
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from bench.payloads import (
    GRPC_BATCH,
    HTTP_BATCH,
    EventIds,
    batch_request_bytes,
    custom_event,
    databuddy_batch,
    template_event,
)
from bench.window import Gate, Tally, Window, describe, drive

STREAM_WINDOW = 2  # batches a SubmitStream client keeps in flight on one stream
SERVICE = "/eventgw.v1.EventGateway/"
REQUEST_TIMEOUT_SECONDS = 30.0  # a request slower than this counts as an error


@dataclass(frozen=True, kw_only=True)
class Target:
    """The gateway under load: its addresses and a project with a key."""

    http_url: str
    grpc_target: str
    project_id: str
    api_key: str


class StreamCall(Protocol):
    """What the stream scenario uses of a ``grpc.aio`` stream-stream call."""

    async def write(self, request: bytes) -> None: ...
    async def done_writing(self) -> None: ...
    def __aiter__(self) -> Any: ...


class StreamChannel(Protocol):
    """What the stream scenario uses of a ``grpc.aio`` channel."""

    def stream_stream(self, method: str, *codecs: None) -> Callable[..., StreamCall]: ...


async def _grpc_scenario(
    scenario: str, target: Target, worker: int, concurrency: int, window: Window, gate: Gate
) -> Tally:
    import grpc

    from gateway.pb.gateway_pb2 import SubmitBatchResponse

    tail = template_event().SerializeToString()
    ids = EventIds(f"{scenario}-{worker}-{os.getpid()}-")
    metadata = (("authorization", f"Bearer {target.api_key}"),)
    retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
    options = [("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target.grpc_target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), REQUEST_TIMEOUT_SECONDS)
        if scenario in ("grpc-batch", "grpc-batch-keyed"):
            call = channel.unary_unary(SERVICE + "SubmitBatch", None, None)
            keys = EventIds(f"key-{worker}-{os.getpid()}-") if scenario.endswith("keyed") else None

            async def send() -> tuple[int, int, int]:
                key = keys.take(1)[0].decode() if keys is not None else ""
                request = batch_request_bytes(ids.take(GRPC_BATCH), tail, key)
                try:
                    raw = await call(request, metadata=metadata, timeout=REQUEST_TIMEOUT_SECONDS)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in retryable:
                        return 0, 0, 1
                    raise
                answer = SubmitBatchResponse.FromString(raw)
                return answer.accepted, answer.duplicates + answer.rejected, 0

            await gate.wait()
            return await drive(send, concurrency, window)
        streams: Any = channel  # raw bytes in and out: no serializers
        return await stream_scenario(streams, ids, tail, metadata, concurrency, window, gate)


async def stream_scenario(
    channel: StreamChannel,
    ids: EventIds,
    tail: bytes,
    metadata: tuple[tuple[str, str], ...],
    concurrency: int,
    window: Window,
    gate: Gate,
) -> Tally:
    """``concurrency`` streams, each with up to ``STREAM_WINDOW`` batches in flight; a batch's
    latency runs from its write to its answer."""
    from gateway.pb.gateway_pb2 import SubmitBatchResponse

    open_stream = channel.stream_stream(SERVICE + "SubmitStream", None, None)
    tally = Tally()
    await gate.wait()
    timeout = window.warmup_s + window.seconds + REQUEST_TIMEOUT_SECONDS

    async def one_stream() -> None:
        call = open_stream(metadata=metadata, timeout=timeout)
        window_slots = asyncio.Semaphore(STREAM_WINDOW)
        sent: collections.deque[float] = collections.deque()  # send times, answered in order

        async def writer() -> None:
            while time.perf_counter() < deadline:
                request = batch_request_bytes(ids.take(GRPC_BATCH), tail)
                await window_slots.acquire()
                # Timed once it can go: waiting for a slot in the window is not its latency.
                sent.append(time.perf_counter())
                await call.write(request)
            await call.done_writing()

        task = asyncio.create_task(writer())
        try:
            async for raw in call:
                t1 = time.perf_counter()
                t0 = sent.popleft()
                window_slots.release()
                if t0 < measured_from or t1 > deadline:
                    continue
                answer = SubmitBatchResponse.FromString(raw)
                tally.requests += 1
                tally.events += answer.accepted
                tally.errors += answer.duplicates + answer.rejected
                tally.latencies_ms.append((t1 - t0) * 1000)
            await task
        except Exception as exc:
            task.cancel()
            tally.fail(exc)

    async with window.measure(tally) as (measured_from, deadline):
        await asyncio.gather(*(one_stream() for _ in range(concurrency)))
    return tally


async def _http_scenario(
    scenario: str, target: Target, worker: int, concurrency: int, window: Window, gate: Gate
) -> Tally:
    import aiohttp

    ids = EventIds(f"{scenario}-{worker}-{os.getpid()}-")
    now_ms = int(time.time() * 1000)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    body: Callable[[], bytes]
    counted: Callable[[Any], int]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if scenario == "databuddy-batch":
            url = f"{target.http_url}/batch?website_id={target.project_id}"
            headers = {"Content-Type": "application/json"}
            expected = HTTP_BATCH

            def body() -> bytes:
                return databuddy_batch(ids.take(HTTP_BATCH), now_ms)

            def counted(answer: Any) -> int:
                return sum(1 for r in answer["results"] if r["status"] == "success")

        else:
            url = f"{target.http_url}/track"
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {target.api_key}",
            }
            expected = 1

            def body() -> bytes:
                return custom_event(ids.take(1)[0])

            def counted(answer: Any) -> int:
                return int(answer["count"])

        async def send() -> tuple[int, int, int]:
            payload = body()
            async with session.post(url, data=payload, headers=headers) as response:
                raw = await response.read()
                if response.status == 503 and "Retry-After" in response.headers:
                    return 0, 0, 1
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {raw[:200]!r}")
            events = counted(orjson.loads(raw))
            return events, expected - events, 0

        async with session.get(f"{target.http_url}/healthz") as warm:
            await warm.read()
        await gate.wait()
        return await drive(send, concurrency, window)


def load_worker(
    scenario: str,
    target: Target,
    worker: int,
    concurrency: int,
    window: Window,
    gate: Gate,
    results: multiprocessing.queues.Queue[Tally],
) -> None:
    """A load-generator process: run ``scenario`` and put its ``Tally`` on ``results``."""
    runner: Callable[[Coroutine[Any, Any, Tally]], Tally]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    else:
        runner = uvloop.run
    scenario_fn = _grpc_scenario if scenario.startswith("grpc") else _http_scenario
    try:
        tally = runner(scenario_fn(scenario, target, worker, concurrency, window, gate))
    except Exception as exc:
        tally = Tally(errors=1, first_error=describe(exc))
    results.put(tally)
