"""``AsyncEventClient``: the client for asyncio code; batches are sent by tasks on the caller's
event loop.

``await client.track(...)`` returns as soon as the event is buffered (under the ``block`` policy
it waits, without blocking the loop, while the buffer is full).
"""

from __future__ import annotations

import asyncio
import dataclasses
from types import TracebackType
from typing import Any

from gateway.client.buffer import BufferFull, Counters
from gateway.client.engine import Engine
from gateway.client.events import encode, track_event
from gateway.client.options import Options
from gateway.pb.event_pb2 import Event


class AsyncEventClient:
    """``AsyncEventClient(target, api_key, **options)``: ``options`` are ``Options`` fields
    (``batch_size``, ``max_age``, ``max_buffered``, ``policy``, ``transport``, TLS files, ...)."""

    def __init__(self, target: str, api_key: str, **options: Any) -> None:
        self.options = Options(**options)
        self._engine = Engine(target, api_key, self.options)
        self._started = False
        self._closed = False
        self._since_yield = 0

    async def start(self) -> None:
        """Open the channel and start sending (the first ``track`` does it too)."""
        if not self._started:
            self._started = True
            await self._engine.start()

    async def track(self, name: str, **fields: Any) -> bool:
        """Enqueue a named event (``properties``, ``user_id``, ``anonymous_id``,
        ``occurred_at``, ``event_id``, ``namespace``, ``type``, ``user_properties``,
        ``source``); False when the ``drop_newest`` policy dropped it."""
        return await self.send(track_event(name, **fields))

    async def send(self, event: Event) -> bool:
        """Enqueue any canonical event; when it has none, it gets its id (a UUIDv7, set on
        ``event`` too) and the millisecond of enqueue as its occurred-at time."""
        encoded = encode(event)
        if not self._started:
            await self.start()
        buffer = self._engine.buffer
        if (
            self.options.policy == "block"
            and not buffer.room()
            and not await self._engine.wait_for_room(self.options.block_timeout)
        ):
            raise BufferFull(f"no room in the buffer within {self.options.block_timeout} s")
        added = buffer.add(encoded, wait=False)
        self._since_yield += 1
        if self._since_yield >= self.options.batch_size:
            # A producer that never awaits otherwise would starve the sending tasks.
            self._since_yield = 0
            await asyncio.sleep(0)
        return added

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Send everything buffered; True once all of it is answered, False on ``timeout``."""
        if not self._started:
            return True
        return await self._engine.flush(timeout)

    async def close(self, timeout: float | None = 30.0) -> bool:  # noqa: ASYNC109
        """Flush (up to ``timeout``), then stop; events still unanswered count as abandoned."""
        if self._closed:
            return True
        self._closed = True
        if not self._started:
            self._engine.buffer.close()
            return True
        return await self._engine.close(timeout)

    @property
    def counters(self) -> Counters:
        """A snapshot of the counters."""
        return dataclasses.replace(self._engine.counters)

    async def __aenter__(self) -> AsyncEventClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
