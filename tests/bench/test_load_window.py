"""The load generator's measured window: requests sent during the warm-up are sent (the gateway
sees the load) but not counted, and neither is a request that ends past the window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from bench.load import STREAM_WINDOW, stream_scenario
from bench.payloads import GRPC_BATCH, EventIds
from bench.window import Gate, Window, drive
from gateway.pb.gateway_pb2 import SubmitBatchResponse

CONCURRENCY = 2


class Sender:
    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self) -> tuple[int, int, int]:
        self.sent += 1
        await asyncio.sleep(0.001)
        return 1, 0, 0


async def test_without_a_warm_up_only_the_requests_past_the_deadline_are_left_out() -> None:
    send = Sender()
    tally = await drive(send, CONCURRENCY, Window(seconds=0.2))
    assert tally.requests == tally.events == len(tally.latencies_ms) > 0
    assert send.sent - tally.requests <= CONCURRENCY  # one in flight per loop at the deadline


async def test_requests_sent_during_the_warm_up_are_not_counted() -> None:
    send = Sender()
    tally = await drive(send, CONCURRENCY, Window(seconds=0.2, warmup_s=0.2))
    assert tally.requests == tally.events == len(tally.latencies_ms) > 0
    assert send.sent - tally.requests > CONCURRENCY


class SlowStream:
    """A ``SubmitStream`` call that answers each batch ``delay_s`` after it was written, one at a
    time and in order, and notes each batch's latency as the server side sees it."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.answers: asyncio.Queue[float | None] = asyncio.Queue()
        self.latencies_ms: list[float] = []
        self._last = asyncio.get_running_loop().create_future()
        self._last.set_result(None)

    async def write(self, request: bytes) -> None:
        written, previous = time.perf_counter(), self._last
        self._last = asyncio.ensure_future(self._answer(written, previous))

    async def _answer(self, written: float, previous: asyncio.Future[None]) -> None:
        await previous
        await asyncio.sleep(self.delay_s)
        self.latencies_ms.append((time.perf_counter() - written) * 1000)
        await self.answers.put(written)

    async def done_writing(self) -> None:
        await self._last
        await self.answers.put(None)

    def __aiter__(self) -> SlowStream:
        return self

    async def __anext__(self) -> bytes:
        if await self.answers.get() is None:
            raise StopAsyncIteration
        return SubmitBatchResponse(accepted=GRPC_BATCH).SerializeToString()


class Channel:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls: list[SlowStream] = []

    def stream_stream(self, *_: object) -> Callable[..., SlowStream]:
        def open_stream(**_: object) -> SlowStream:
            self.calls.append(SlowStream(self.delay_s))
            return self.calls[-1]

        return open_stream


class Started:
    async def wait(self) -> None:
        return None


async def test_a_stream_batch_is_timed_from_when_the_window_lets_it_go() -> None:
    """With ``STREAM_WINDOW`` batches in flight the next one waits for a slot; that wait is the
    client's, not the gateway's, and is not in its latency."""
    delay_s = 0.02
    channel = Channel(delay_s)
    tally = await stream_scenario(
        channel, EventIds("s-"), b"", (), 1, Window(seconds=0.3), cast(Gate, Started())
    )
    [stream] = channel.calls
    assert tally.requests >= 3 * STREAM_WINDOW and tally.events == tally.requests * GRPC_BATCH
    # Each batch's latency is what the server took for it (answers queue behind one another
    # up to the window, never behind a slot the client waited for): the slowest measured is
    # the slowest served, not one more answer's delay above it.
    assert max(tally.latencies_ms) < max(stream.latencies_ms) + delay_s * 1000 / 2
