"""The measured window of a load generator: what it counts, and when.

A load run is ``warmup_s`` of load that is not counted, then ``seconds`` that are
(:class:`Window`); the processes of one scenario start together (:class:`Gate`); a closed loop
keeps requests in flight and counts those that started inside the window and completed before
its end (:func:`drive`) into a :class:`Tally`: requests, events, errors, retryable refusals and
each request's latency, and apart from those every event acknowledged at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.queues
import multiprocessing.synchronize
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Window:
    """A load run: ``warmup_s`` of load that is not counted, then ``seconds`` that are.

    At the start every client sends at once, so the first requests all queue behind one another
    (and behind a cold process) and a 5-second run's p99 is mostly theirs; the warm-up keeps
    that start out of the figures, which describe the steady state. A request is counted when it
    started inside the window and completed before its end."""

    seconds: float
    warmup_s: float = 0.0

    @contextlib.asynccontextmanager
    async def measure(self, tally: Tally) -> AsyncIterator[tuple[float, float]]:
        """Start the run now: yields (measured from, deadline) on ``time.perf_counter``'s clock;
        on exit ``tally`` gets the measured window's length and this process's CPU time in it."""
        measured_from = time.perf_counter() + self.warmup_s

        async def cpu_at_window_start() -> float:
            await asyncio.sleep(self.warmup_s)
            return time.process_time()

        cpu = asyncio.create_task(cpu_at_window_start())
        yield measured_from, measured_from + self.seconds
        tally.elapsed_s = time.perf_counter() - measured_from
        tally.cpu_s = time.process_time() - await cpu


@dataclass(frozen=True, kw_only=True)
class Gate:
    """Workers report ``ready`` once connected, then all start when ``go`` is set."""

    ready: multiprocessing.queues.Queue[int]
    go: multiprocessing.synchronize.Event

    async def wait(self) -> None:
        self.ready.put(os.getpid())
        await asyncio.to_thread(self.go.wait)


@dataclass(kw_only=True)
class Tally:
    """What one worker (or, summed, one scenario) completed inside the measured window."""

    requests: int = 0
    events: int = 0
    errors: int = 0
    refused: int = 0  # retryable refusals: HTTP 503 / gRPC RESOURCE_EXHAUSTED, UNAVAILABLE
    # Events accepted over the whole load, warm-up and the requests that ended past the window
    # included: everything acknowledged, which the pipeline scenarios find again in the stream.
    acknowledged: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # the load generators' own CPU time in the window
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str = ""

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.events += other.events
        self.errors += other.errors
        self.refused += other.refused
        self.acknowledged += other.acknowledged
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.cpu_s += other.cpu_s
        self.latencies_ms.extend(other.latencies_ms)
        self.first_error = self.first_error or other.first_error

    def fail(self, exc: BaseException) -> None:
        """Count ``exc`` as an error, keeping the first one's text."""
        self.errors += 1
        self.first_error = self.first_error or describe(exc)


def describe(exc: BaseException) -> str:
    """An error as the report shows it: its type and message, at most 300 characters."""
    return f"{type(exc).__name__}: {exc}"[:300]


Send = Callable[[], Awaitable[tuple[int, int, int]]]  # -> (events, errors, refused)


async def drive(send: Send, concurrency: int, window: Window) -> Tally:
    """``concurrency`` closed loops of ``send`` for ``window``; a refused request is retried
    after 50 ms."""
    tally = Tally()

    async def loop() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                events, errors, refused = await send()
            except Exception as exc:
                events, errors, refused = 0, 1, 0
                tally.first_error = tally.first_error or describe(exc)
            t1 = time.perf_counter()
            tally.acknowledged += events
            if t1 > deadline:
                break
            if t0 >= measured_from:  # sent inside the window
                tally.requests += 1
                tally.events += events
                tally.errors += errors
                tally.refused += refused
                tally.latencies_ms.append((t1 - t0) * 1000)
            if refused:
                await asyncio.sleep(0.05)

    async with window.measure(tally) as (measured_from, deadline):
        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return tally
