"""``EventClient``: the client for threaded code. ``track`` and ``send`` buffer the event and
return; a background thread runs the sending engine on its own asyncio loop. A client still open
when the interpreter exits is closed then (flushed for up to ``exit_timeout`` seconds).
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import threading
import weakref
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from gateway.client.buffer import Counters
from gateway.client.engine import Engine
from gateway.client.events import encode, track_event
from gateway.client.options import Options
from gateway.pb.event_pb2 import Event

T = TypeVar("T")


_OPEN: weakref.WeakSet[EventClient] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for client in list(_OPEN):
        client.close(client.exit_timeout)


class EventClient:
    """``EventClient(target, api_key, **options)``: ``options`` are ``Options`` fields
    (``batch_size``, ``max_age``, ``max_buffered``, ``policy``, ``transport``, TLS files, ...).
    Safe to share between threads. The ``on_rejected`` callback runs on the client's thread."""

    def __init__(
        self, target: str, api_key: str, *, exit_timeout: float = 10.0, **options: Any
    ) -> None:
        self.options = Options(**options)
        self.exit_timeout = exit_timeout
        self._engine = Engine(target, api_key, self.options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="eventgw-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._call(self._engine.start())
        _OPEN.add(self)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def track(self, name: str, **fields: Any) -> bool:
        """Enqueue a named event (``properties``, ``user_id``, ``anonymous_id``,
        ``occurred_at``, ``event_id``, ``namespace``, ``type``, ``user_properties``,
        ``source``); False when the ``drop_newest`` policy dropped it."""
        return self.send(track_event(name, **fields))

    def send(self, event: Event) -> bool:
        """Enqueue any canonical event; when it has none, it gets its id (a UUIDv7, set on
        ``event`` too) and the millisecond of enqueue as its occurred-at time. Under the ``block``
        policy this waits while the buffer is full (``block_timeout``, then ``BufferFull``)."""
        return self._engine.buffer.add(encode(event), timeout=self.options.block_timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered; True once all of it is answered, False on ``timeout``."""
        if self._closed:
            return True
        return self._call(self._engine.flush(timeout))

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush (up to ``timeout``), then stop; events still unanswered count as abandoned."""
        if self._closed:
            return True
        self._closed = True
        _OPEN.discard(self)
        try:
            return self._call(self._engine.close(timeout))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    @property
    def counters(self) -> Counters:
        """A snapshot of the counters."""
        return dataclasses.replace(self._engine.counters)

    def __enter__(self) -> EventClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
