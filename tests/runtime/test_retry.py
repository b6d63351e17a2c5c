"""Retry policy."""

import random

from services.runtime.retry import PermanentError, RetryableError, RetryPolicy


def test_bounded_attempts_and_permanent_errors():
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(1, RuntimeError())
    assert policy.should_retry(2, RuntimeError())
    assert not policy.should_retry(3, RuntimeError())
    assert not policy.should_retry(1, PermanentError("bad"))


def test_backoff_grows_caps_and_honours_retry_after():
    policy = RetryPolicy(initial_s=0.1, max_s=1.0, jitter=0.0)
    delays = [policy.delay_s(a) for a in range(1, 8)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == 1.0
    assert policy.delay_s(1, RetryableError("429", retry_after_s=0.7)) == 0.7
    assert policy.delay_s(1, RetryableError("429", retry_after_s=60)) == 1.0


def test_jitter_stays_within_spread():
    policy = RetryPolicy(initial_s=1.0, max_s=10.0, jitter=0.2)
    rng = random.Random(3)
    samples = [policy.delay_s(1, rng=rng) for _ in range(500)]
    assert min(samples) >= 0.8 and max(samples) <= 1.2
    assert max(samples) - min(samples) > 0.2  # jitter is actually applied
