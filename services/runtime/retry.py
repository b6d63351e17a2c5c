"""Retry policy: bounded attempts with capped exponential backoff and jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


class PermanentError(Exception):
    """The message can never succeed (bad content, unparseable output): no retry."""

    def __init__(self, message: str, *, raw_output: str = "") -> None:
        super().__init__(message)
        self.raw_output = raw_output


class RetryableError(Exception):
    """A transient failure; ``retry_after_s`` overrides the backoff when known."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a failing handler."""

    max_attempts: int = 4
    initial_s: float = 0.2
    max_s: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """True when ``attempt`` (1-based) failed with a retryable error and attempts remain."""
        return attempt < self.max_attempts and not isinstance(error, PermanentError)

    def delay_s(
        self, attempt: int, error: BaseException | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one."""
        if isinstance(error, RetryableError) and error.retry_after_s is not None:
            return min(max(error.retry_after_s, 0.0), self.max_s)
        base = min(self.initial_s * self.multiplier ** (attempt - 1), self.max_s)
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))
