"""The one rate limiter of the panel and Modbus: a token bucket per key, refusing or delaying."""

from __future__ import annotations

import random

import pytest

from meterd.channels import ratelimit
from meterd.channels.ratelimit import RateLimiter


class Bucket:
    """The token bucket the panel used before: ``rate`` tokens a second, at most ``burst`` of them."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@pytest.mark.parametrize(("rate", "burst"), [(5, 10), (20, 40), (1, 1), (50, 3), (7, 7)])
def test_take_refuses_exactly_where_a_token_bucket_does(rate: int, burst: int) -> None:
    rng = random.Random(rate * 1000 + burst)
    now = 100.0
    limiter, bucket = RateLimiter(rate, burst), Bucket(rate, burst, now)
    for _ in range(3000):
        now += rng.choice((0.0, 0.0, 0.001, 0.013, 0.1, 0.5, 2.0)) * (1 + rng.random() * 1e-3)
        assert limiter.take("panel", now) == bucket.take(now), now


def test_a_refused_take_spends_nothing_and_keys_are_apart() -> None:
    limiter = RateLimiter(5, 10)
    assert all(limiter.take("a", 10.0) for _ in range(10))
    assert not any(limiter.take("a", 10.0) for _ in range(100))
    assert limiter.take("b", 10.0)
    assert limiter.take("a", 10.2)  # one interval later: exactly one more, however often it was refused
    assert not limiter.take("a", 10.2)


def test_delay_reserves_and_keys_are_forgotten_once_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "PRUNE_AT", 4)
    limiter = RateLimiter(10)
    assert [limiter.delay("a", 0.0) for _ in range(11)][-1] == pytest.approx(0.1)
    for i in range(6):
        limiter.delay(f"k{i}", 100.0 + i)  # each key's budget is full again by the next one's request
    assert len(limiter._due) <= 4
    assert "a" not in limiter._due
    assert limiter.delay("k5", 105.0) == 0.0  # a kept key still counts what it spent
