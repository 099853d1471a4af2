"""Per-key rate limits: ``N/s`` or ``N/min`` specifications and the token buckets enforcing them.

A key's limit is the spec string stored with it (``api_keys.rate_limit``; ``eventgw keys create
--rate-limit`` / ``keys set-rate-limit``; NULL: unlimited). ``RateLimiter.acquire`` takes one token
from the key's bucket per request (REST request or gRPC batch), raising ``RateLimited`` with the
time until the next token when there is none. A bucket holds at most ``N`` tokens (a full window's
worth: a client idle for a window may burst) and refills at ``N / window`` tokens per second.

Across processes (``eventgw serve --workers W``) the limit is split, not shared: each worker runs
its own buckets at ``1/W`` of the key's rate and capacity (``Settings.workers``, which the
supervisor passes to every worker). The sum over workers never exceeds the configured limit and the
hot path costs no database round trip. A shared bucket in the database would cost a write per
request (or, batched, a lease protocol that is only approximate anyway); the price of the split
is that a client whose connections all land on one worker (the kernel spreads SO_REUSEPORT
connections by address hash) gets ``1/W`` of its limit, never more than the limit. A bucket never
holds less than one token of capacity, so for ``N < W`` the whole-key limit is at most ``W`` per
window. A changed spec (``set-rate-limit``) reaches the bucket with the next request after the
authenticator's cache expires; the tokens the key had are kept, capped to the new capacity.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import ConfigError
from gateway.errors import RateLimited

log = logging.getLogger(__name__)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute)\s*$")
# Buckets kept per process; past this, full (idle) buckets are dropped first.
MAX_BUCKETS = 100_000


def parse_rate(spec: str) -> tuple[int, float]:
    """``"100/min"`` → (100, 60.0): requests allowed per window of seconds."""
    match = _RATE.match(spec)
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"rate limit {spec!r} is not N/s or N/min")
    window = 1.0 if match.group(2).startswith("s") else 60.0
    return int(match.group(1)), window


@functools.lru_cache(maxsize=1024)
def _parsed(spec: str) -> tuple[int, float] | None:
    try:
        return parse_rate(spec)
    except ConfigError:
        # The CLI validates specs; one written to the database by hand is ignored, loudly.
        log.warning("ignoring invalid rate limit %r: not N/s or N/min", spec)
        return None


@dataclass(frozen=True, kw_only=True)
class Quota:
    """A key's rate-limit state after a request, for ``X-RateLimit-*`` headers.

    ``limit`` is the key's configured N per ``window``; ``remaining`` the whole requests left
    now (this worker's tokens scaled to the key); ``reset_after`` the seconds until the bucket
    is full again.
    """

    limit: int
    window: float
    remaining: int
    reset_after: float

    def headers(self, now: float | None = None) -> dict[str, str]:
        """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix seconds when full again)."""
        wall = time.time() if now is None else now
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(wall + self.reset_after)),
        }


@dataclass(kw_only=True)
class _Bucket:
    spec: str
    limit: int
    window: float
    capacity: float  # this worker's share, at least one token
    rate: float  # tokens per second for this worker
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now


class RateLimiter:
    """Token buckets keyed by API key id, this worker's share of each key's limit."""

    def __init__(self, *, workers: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key_id: str | None, spec: str | None) -> Quota | None:
        """Take one token for ``key_id``; its ``Quota`` after the request, or None when the key
        has no limit. Raises ``RateLimited`` (with ``retry_after``) when the bucket is empty."""
        if key_id is None or not spec:
            return None
        parsed = _parsed(spec)
        if parsed is None:
            return None
        now = self.clock()
        bucket = self._bucket(key_id, spec, parsed, now)
        bucket.refill(now)
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / bucket.rate
            raise RateLimited(
                f"Rate limit of {bucket.limit} requests per {_window_name(bucket.window)}"
                f" exceeded; retry in {wait:.2f} s",
                limit=bucket.limit,
                window=bucket.window,
                retry_after=wait,
            )
        bucket.tokens -= 1.0
        return self._quota(bucket)

    def quota(self, key_id: str | None, spec: str | None) -> Quota | None:
        """The key's current state without taking a token (for the headers of a 429)."""
        if key_id is None or not spec or (parsed := _parsed(spec)) is None:
            return None
        now = self.clock()
        bucket = self._bucket(key_id, spec, parsed, now)
        bucket.refill(now)
        return self._quota(bucket)

    def _quota(self, bucket: _Bucket) -> Quota:
        remaining = min(bucket.limit, math.floor(bucket.tokens * self.workers))
        return Quota(
            limit=bucket.limit,
            window=bucket.window,
            remaining=max(0, remaining),
            reset_after=(bucket.capacity - bucket.tokens) / bucket.rate,
        )

    def _bucket(self, key_id: str, spec: str, parsed: tuple[int, float], now: float) -> _Bucket:
        bucket = self._buckets.get(key_id)
        if bucket is not None and bucket.spec == spec:
            return bucket
        limit, window = parsed
        capacity = max(1.0, limit / self.workers)
        tokens = capacity
        if bucket is not None:  # the spec changed: keep what the key had left, within the new cap
            bucket.refill(now)
            tokens = min(capacity, bucket.tokens)
        elif len(self._buckets) >= MAX_BUCKETS:
            self._evict(now)
        fresh = _Bucket(
            spec=spec,
            limit=limit,
            window=window,
            capacity=capacity,
            rate=limit / window / self.workers,
            tokens=tokens,
            updated=now,
        )
        self._buckets[key_id] = fresh
        return fresh

    def _evict(self, now: float) -> None:
        """Drop the buckets that are full again (forgetting them changes nothing); if none is,
        drop them all (a key then briefly gets a fresh burst)."""
        for key_id, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.capacity:
                del self._buckets[key_id]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()


def _window_name(window: float) -> str:
    return "second" if window == 1.0 else "minute" if window == 60.0 else f"{window:g} s"
