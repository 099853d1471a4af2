"""Unit tests of the per-key token buckets (``gateway.ratelimit``), on a fake clock."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError
from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter, parse_rate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("100/min", (100, 60.0)), ("5/s", (5, 1.0)), (" 7 / second ", (7, 1.0)), ("1/m", (1, 60.0))],
)
def test_parse_rate(spec: str, parsed: tuple[int, float]) -> None:
    assert parse_rate(spec) == parsed


@pytest.mark.parametrize("spec", ["", "0/s", "-1/s", "5", "5/h", "x/s", "1.5/s"])
def test_parse_rate_refuses(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_rate(spec)


def test_no_key_or_no_limit_is_unlimited() -> None:
    limiter = RateLimiter()
    for _ in range(1000):
        assert limiter.acquire(None, "1/min") is None
        assert limiter.acquire("k", None) is None
        assert limiter.acquire("k", "not a spec") is None  # ignored, with a warning


def test_bucket_allows_a_window_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    remaining = [q.remaining for q in (limiter.acquire("k", "3/min") for _ in range(3)) if q]
    assert remaining == [2, 1, 0]
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("k", "3/min")
    error = caught.value
    assert (error.limit, error.window) == (3, 60.0)
    assert error.retry_after == pytest.approx(20.0)
    clock.now += 19.9
    with pytest.raises(RateLimited):
        limiter.acquire("k", "3/min")
    clock.now += 0.2
    quota = limiter.acquire("k", "3/min")
    assert quota is not None and quota.remaining == 0
    assert quota.reset_after == pytest.approx(60.0, abs=0.5)
    # Other keys have their own buckets.
    assert limiter.acquire("other", "3/min") is not None


def test_headers() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    quota = limiter.acquire("k", "10/s")
    assert quota is not None
    assert quota.headers(now=5000.0) == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "9",
        "X-RateLimit-Reset": "5001",  # 0.1 s to full, rounded up to whole Unix seconds
    }


def test_workers_split_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(workers=4, clock=clock)
    allowed = 0
    for _ in range(100):
        try:
            limiter.acquire("k", "100/s")
            allowed += 1
        except RateLimited as exc:
            assert exc.retry_after == pytest.approx(0.04)  # 25 tokens/s in this worker
    assert allowed == 25
    # Over a long run, this worker's share is a quarter of the key's rate.
    for _ in range(1000):
        clock.now += 0.01
        try:
            limiter.acquire("k", "100/s")
            allowed += 1
        except RateLimited:
            pass
    assert allowed == pytest.approx(25 + 250, abs=2)


def test_a_worker_bucket_holds_at_least_one_token() -> None:
    limiter = RateLimiter(workers=8, clock=Clock())
    assert limiter.acquire("k", "2/min") is not None
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("k", "2/min")
    assert caught.value.retry_after == pytest.approx(240.0)  # 2/min over 8 workers


def test_changed_spec_keeps_the_tokens_left() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for _ in range(5):
        limiter.acquire("k", "5/min")
    with pytest.raises(RateLimited):
        limiter.acquire("k", "5/min")
    # Raised: no fresh burst, but the faster refill applies at once.
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("k", "100/s")
    assert caught.value.retry_after <= 0.01
    clock.now += 0.05
    assert limiter.acquire("k", "100/s") is not None
    # Lowered: capped to the new capacity.
    clock.now += 10
    assert limiter.acquire("k", "1/min") is not None
    with pytest.raises(RateLimited):
        limiter.acquire("k", "1/min")


def test_bucket_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.ratelimit.MAX_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for i in range(10):
        limiter.acquire(f"k{i}", "1/s")
    clock.now += 5  # every bucket is full again: forgetting them changes nothing
    limiter.acquire("new", "1/s")
    assert len(limiter._buckets) == 1
    for i in range(10):
        limiter.acquire(f"busy{i}", "1/s")
    limiter.acquire("newer", "1/s")  # none is full: all are dropped
    assert len(limiter._buckets) <= 10
