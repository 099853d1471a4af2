"""The watch a pipeline scenario keeps on the outbox and the stream, from the bench's process.

A :class:`PipelineMonitor` runs an event loop of its own in a thread, with a database engine on
the gateway's database and a NATS connection. It creates the run's JetStream stream before the
relay starts (the relay then finds it and leaves it as it is) and deletes it at the end; it reads
the stream's message count (``js.stream_info``) when the measured window starts and ends
(:class:`bench.scenario.Watch`), samples the outbox's lag (``gateway.delivery.outbox.outbox_lag``:
the pending count and the age of the oldest undelivered event) every ``LAG_INTERVAL_SECONDS`` in
the window, and after it waits until the outbox has nothing undelivered (:meth:`wait_drained`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.js.errors
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.delivery.outbox import DUPLICATE_WINDOW_SECONDS, outbox_lag
from gateway.storage.engine import create_engine

LAG_INTERVAL_SECONDS = 0.2
DRAIN_POLL_SECONDS = 0.02
CALL_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


@dataclass(frozen=True)
class LagSample:
    """One look at the outbox: when (``time.perf_counter``), how many undelivered, how old the
    oldest of them (seconds)."""

    at: float
    pending: int
    lag_s: float


@dataclass(frozen=True)
class Mark:
    """The stream's message count at a moment (``time.perf_counter``)."""

    at: float
    messages: int


class PipelineMonitor:
    """The outbox and the stream ``stream`` (subjects ``<subject_prefix>.>``), watched."""

    def __init__(self, database_url: str, nats_url: str, stream: str, subject_prefix: str) -> None:
        self.database_url, self.nats_url = database_url, nats_url
        self.stream, self.subject_prefix = stream, subject_prefix
        self.samples: list[LagSample] = []
        self.start: Mark | None = None
        self.end: Mark | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._engine: AsyncEngine | None = None
        self._nc: NATS | None = None
        self._sampler: asyncio.Task[None] | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_SECONDS)

    def open(self) -> None:
        """Connect, and create the stream as the relay would (fails if it already exists)."""
        self._thread.start()
        self._call(self._open())

    async def _open(self) -> None:
        self._engine = create_engine(Settings(database_url=self.database_url))
        self._nc = await nats.connect(self.nats_url, connect_timeout=5, allow_reconnect=False)
        await self._nc.jetstream().add_stream(
            name=self.stream,
            subjects=[f"{self.subject_prefix}.>"],
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
        )

    async def _messages(self) -> int:
        assert self._nc is not None
        info = await self._nc.jetstream().stream_info(self.stream)
        return int(info.state.messages)

    async def _mark(self) -> Mark:
        at = time.perf_counter()
        return Mark(at, await self._messages())

    def stream_messages(self) -> int:
        return self._call(self._messages())

    async def _sample(self) -> None:
        assert self._engine is not None
        while True:
            at = time.perf_counter()
            lag = await outbox_lag(self._engine)
            self.samples.append(LagSample(at, lag.pending, lag.lag_seconds))
            await asyncio.sleep(max(0.0, at + LAG_INTERVAL_SECONDS - time.perf_counter()))

    async def _start_window(self) -> None:
        self.start = await self._mark()
        self._sampler = asyncio.create_task(self._sample())

    async def _end_window(self) -> None:
        self.end = await self._mark()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    def window_started(self) -> None:
        self._call(self._start_window())

    def window_ended(self) -> None:
        self._call(self._end_window())

    async def _drained(self, patience_s: float) -> float | None:
        assert self._engine is not None
        deadline = time.perf_counter() + patience_s
        while time.perf_counter() < deadline:
            if (await outbox_lag(self._engine)).pending == 0:
                return time.perf_counter()
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        return None

    def wait_drained(self, timeout: float) -> float | None:
        """When (``time.perf_counter``) the outbox was first seen with nothing undelivered; None
        if not within ``timeout`` seconds. Call it once the load has stopped."""
        return asyncio.run_coroutine_threadsafe(self._drained(timeout), self._loop).result()

    async def _close(self) -> None:
        if self._sampler is not None and not self._sampler.done():
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._nc is not None:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._nc.jetstream().delete_stream(self.stream)
            await self._nc.close()
        if self._engine is not None:
            await self._engine.dispose()

    def close(self) -> None:
        """Delete the stream, disconnect and stop the thread."""
        if self._thread.is_alive():
            try:
                self._call(self._close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
        self._loop.close()
