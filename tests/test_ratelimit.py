"""The per-connection token bucket and the shared timeouts, on a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from gameserver._wire.limits import Deadlines, TokenBucket

RATE = 4.0  # tokens per second
BURST = 5


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(1_800_000_000)
    return clock


@pytest.fixture
def bucket(clock):
    return TokenBucket(RATE, BURST, clock)


def _drain(bucket, limit=1000):
    """Take tokens until refused; return how many were granted."""
    granted = 0
    while bucket.take():
        granted += 1
        assert granted <= limit, "the bucket never ran dry"
    return granted


def test_burst_then_refused(bucket):
    assert [bucket.take() for _ in range(BURST)] == [True] * BURST
    assert bucket.take() is False
    assert bucket.take() is False


def test_refused_calls_do_not_cost_tokens(bucket, clock):
    _drain(bucket)
    for _ in range(100):
        assert bucket.take() is False
    clock.advance(1 / RATE)
    assert bucket.take() is True


def test_refills_at_rate(bucket, clock):
    _drain(bucket)
    clock.advance(1 / RATE)
    assert bucket.take() is True
    assert bucket.take() is False
    clock.advance(1.0)
    assert _drain(bucket) == int(RATE)


def test_partial_tokens_accumulate(bucket, clock):
    _drain(bucket)
    clock.advance(0.5 / RATE)
    assert bucket.take() is False
    clock.advance(0.5 / RATE)
    assert bucket.take() is True
    assert bucket.take() is False


def test_never_exceeds_burst(bucket, clock):
    clock.advance(3600)
    assert _drain(bucket) == BURST
    clock.advance(3600)
    assert _drain(bucket) == BURST


def test_refill_capped_after_partial_use(bucket, clock):
    for _ in range(2):
        assert bucket.take()
    clock.advance(10.0)
    assert _drain(bucket) == BURST


def test_sustained_rate(bucket, clock):
    _drain(bucket)
    granted = 0
    # Ask 10 times a second for 10 s: only RATE a second get through.
    for _ in range(100):
        clock.advance(0.1)
        granted += bucket.take()
    assert granted == pytest.approx(RATE * 10, abs=1)


def test_clock_not_advanced_gives_nothing_back(bucket):
    _drain(bucket)
    assert bucket.take() is False


def test_fractional_rate():
    clock = Clock()
    bucket = TokenBucket(0.5, 1, clock)
    assert bucket.take() is True
    clock.advance(1.5)
    assert bucket.take() is False
    clock.advance(0.5)
    assert bucket.take() is True


def test_deadlines_fire_on_time_and_not_when_cancelled(clock):
    deadlines = Deadlines(clock, 10.0)
    fired = []
    deadlines.start("a", lambda: fired.append("a"))
    clock.advance(4)
    deadlines.start("b", lambda: fired.append("b"))
    deadlines.start("c", lambda: fired.append("c"))
    deadlines.cancel("b")
    clock.advance(5.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == ["a"]
    clock.advance(3.9)
    assert fired == ["a"]
    clock.advance(0.1)
    assert fired == ["a", "c"]
    assert len(deadlines) == 0 and clock.getDelayedCalls() == []


def test_deadlines_share_one_timer(clock):
    deadlines = Deadlines(clock, 10.0)
    fired = []
    for i in range(1000):
        deadlines.start(i, lambda i=i: fired.append(i))
        clock.advance(0.001)
        if i % 10:
            deadlines.cancel(i)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(10)
    assert fired == list(range(0, 1000, 10))


def test_an_expiry_may_start_and_cancel_others(clock):
    deadlines = Deadlines(clock, 1.0)
    fired = []

    def first():
        fired.append("first")
        deadlines.cancel("second")  # due at the same time: not called
        deadlines.start("third", lambda: fired.append("third"))

    deadlines.start("first", first)
    deadlines.start("second", lambda: fired.append("second"))
    clock.advance(1)
    assert fired == ["first"]
    clock.advance(1)
    assert fired == ["first", "third"]
    assert clock.getDelayedCalls() == []
