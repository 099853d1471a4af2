"""The client's bounded buffer, its batches and its counters; shared by both clients and safe to
use from any thread.

An event is held from enqueue until its batch is answered for good (accepted, duplicate or
rejected): memory stays bounded while the gateway is down. At ``capacity`` held events the
policy decides: ``block`` the caller (up to a timeout, then ``BufferFull``), ``drop_newest``
(the event is counted as dropped), or ``raise`` ``BufferFull``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.client.events import batch_request

Policy = Literal["block", "drop_newest", "raise"]
POLICIES = ("block", "drop_newest", "raise")


class BufferFull(Exception):
    """The buffer holds its maximum of events (policy ``raise``, or ``block`` past its timeout)."""


class ClientClosed(Exception):
    """An event was enqueued after ``close()``."""


@dataclass
class Counters:
    """Events by fate. Once everything is flushed: ``enqueued == accepted + duplicates +
    rejected + abandoned``; ``dropped`` were refused at enqueue (``drop_newest``), ``sent`` counts
    each event once however often its batch was tried, ``retried`` each event of each retry."""

    enqueued: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retried: int = 0
    dropped: int = 0
    abandoned: int = 0  # still unsent or unanswered when ``close``'s timeout ran out
    batches: int = 0
    replayed_batches: int = 0


@dataclass(frozen=True)
class Rejection:
    """An event the gateway refused: per event (``code`` as in ``EventResult``, e.g.
    ``missing_field``) or with its whole batch (``code`` the gRPC status name, e.g.
    ``UNAUTHENTICATED``)."""

    event_id: str
    code: str
    message: str
    field: str = ""
    index: int = 0
    encoded: bytes = b""


@dataclass
class Batch:
    """Events under the idempotency key they were given when the batch was formed; every attempt
    sends ``request``, the same bytes."""

    key: str
    events: list[bytes]
    request: bytes
    attempts: int = 0
    formed_at: float = field(default_factory=time.monotonic)


class Buffer:
    """Encoded events waiting for a batch, and the count of events held until answered."""

    def __init__(
        self,
        *,
        capacity: int,
        policy: Policy,
        batch_size: int,
        max_batch_bytes: int,
        on_batch_ready: Callable[[], None],
        counters: Counters,
        key_factory: Callable[[], str] | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        if capacity < batch_size:
            raise ValueError("max_buffered must be at least batch_size")
        self.capacity, self.policy = capacity, policy
        self.batch_size, self.max_batch_bytes = batch_size, max_batch_bytes
        self.counters = counters
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.oldest = 0.0  # monotonic time of the oldest pending event
        self.held = 0
        self.closed = False
        self._on_batch_ready = on_batch_ready
        self._key = key_factory or (lambda: f"egwc-{uuid.uuid4()}")
        self.lock = threading.Lock()
        self.space = threading.Condition(self.lock)

    def add(self, encoded: bytes, *, timeout: float | None = None, wait: bool = True) -> bool:
        """Hold ``encoded``: True, or False when the policy dropped it. ``wait=False`` never
        blocks (an asyncio caller waits by itself: ``room`` tells it when)."""
        with self.lock:
            full = self.held >= self.capacity or self.closed
            if full and not self._wait_for_room(timeout, wait):
                return False
            pending = self.pending
            if not pending:
                self.oldest = time.monotonic()
            pending.append(encoded)
            self.pending_bytes += len(encoded)
            self.held += 1
            self.counters.enqueued += 1
            if len(pending) != self.batch_size and self.pending_bytes < self.max_batch_bytes:
                return True
        self._on_batch_ready()
        return True

    def _wait_for_room(self, timeout: float | None, wait: bool) -> bool:
        """Under the lock, with the buffer full or closed: True once there is room, False when
        the policy drops the event; else ``BufferFull`` or ``ClientClosed``."""
        if self.closed:
            raise ClientClosed("the client is closed")
        if self.policy == "drop_newest":
            self.counters.dropped += 1
            return False
        if self.policy == "raise" or not wait:
            raise BufferFull(f"{self.held} events buffered (max_buffered)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.held >= self.capacity and not self.closed:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise BufferFull(f"no room in the buffer within {timeout} s")
            self.space.wait(left)
        if self.closed:
            raise ClientClosed("the client is closed")
        return True

    def room(self) -> bool:
        with self.lock:
            return self.held < self.capacity

    def take(self, *, force: bool, max_age: float) -> list[Batch]:
        """The batches due now: every full one; with ``force`` or once the oldest pending event
        is ``max_age`` old, the rest too."""
        with self.lock:
            if not self.pending:
                return []
            due = force or time.monotonic() - self.oldest >= max_age
            cut, rest, nbytes = self._cut()
            if rest and (due or len(rest) == self.batch_size or nbytes >= self.max_batch_bytes):
                cut.append(rest)
                rest, nbytes = [], 0
            self.pending, self.pending_bytes = rest, nbytes
            if rest and cut:
                self.oldest = time.monotonic()
            return [self._batch(events) for events in cut]

    def _cut(self) -> tuple[list[list[bytes]], list[bytes], int]:
        """The pending events as full batches, and the rest with its size in bytes. While all of
        them are within the byte limit (as a rule) batches are cut by count alone, with no event's
        size to add up; else event by event, a batch ending at ``batch_size`` events or before
        the event that would take it past ``max_batch_bytes``."""
        pending, size, limit = self.pending, self.batch_size, self.max_batch_bytes
        if self.pending_bytes <= limit:
            full = len(pending) - len(pending) % size
            rest = pending[full:]
            nbytes = sum(map(len, rest)) if full else self.pending_bytes
            return [pending[i : i + size] for i in range(0, full, size)], rest, nbytes
        cut: list[list[bytes]] = []
        start, n, nbytes = 0, 0, 0
        for i, encoded in enumerate(pending):
            if n and (n == size or nbytes + len(encoded) > limit):
                cut.append(pending[start:i])
                start, n, nbytes = i, 0, 0
            n += 1
            nbytes += len(encoded)
        return cut, pending[start:], nbytes

    def _batch(self, events: list[bytes]) -> Batch:
        key = self._key()
        return Batch(key=key, events=events, request=batch_request(key, events))

    def release(self, n: int) -> None:
        """``n`` held events are answered for good: room for as many."""
        with self.lock:
            self.held -= n
            self.space.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.space.notify_all()
