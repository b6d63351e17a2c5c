"""What every model client shares: the concurrency bound, the deadline, metrics.

A subclass implements :meth:`BaseClient._send` (one HTTP request through its
SDK) and :meth:`BaseClient._classify` (SDK exception -> outcome label and the
runtime error to raise). ``chat`` never retries: see :mod:`services.llm`.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from services.llm.metrics import MetricsCache
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ChatResponse
from services.models.base import CallUsage
from services.runtime.retry import PermanentError, RetryableError

log = structlog.get_logger(__name__)

#: Longest Retry-After we pass on; a server asking for more gets the runtime's cap anyway.
MAX_RETRY_AFTER_S = 300.0
#: Longest pause of new requests after a 429 (the client-wide cool-down).
MAX_COOLDOWN_S = 60.0


def retry_after_s(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms:
        try:
            return min(max(float(raw_ms) / 1000.0, 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            pass
    raw = lower.get("retry-after")
    if not raw:
        return None
    try:
        return min(max(float(raw), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


class MalformedResponseError(Exception):
    """A response we could not read (truncated body, missing fields): transient."""


class BaseClient(ABC):
    """Bounded, timed, measured single-request chat calls."""

    provider: str = ""

    def __init__(self, options: LLMOptions) -> None:
        self.options = options
        self.default_model = options.model
        self.supports_images = options.supports_images
        self.supports_logprobs = options.logprobs
        self._semaphore = asyncio.Semaphore(options.concurrency)
        self._metrics = MetricsCache(self.provider)
        self._paused_until = 0.0  # loop time before which no new request starts

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat completion: waits for a slot, then one request under a deadline."""
        model = request.model or self.default_model
        if not model:
            raise PermanentError("no model configured and the task names none")
        m = self._metrics.model(model)
        loop = asyncio.get_running_loop()
        pause = self._paused_until - loop.time()
        if pause > 0:
            # The server said when to come back: the other requests wait too,
            # rather than each spending a request to learn the same.
            await asyncio.sleep(pause)
        queued = time.perf_counter()
        async with self._semaphore:
            started = time.perf_counter()
            self._metrics.queue_wait.observe(started - queued)
            self._metrics.in_flight.inc()
            try:
                # The SDK's timeout bounds each socket operation; this bounds the
                # whole request, so a server that trickles bytes cannot hold a slot.
                async with asyncio.timeout(self.options.timeout_s):
                    response = await self._send(request, model)
            except TimeoutError:
                m.outcome(self.provider, model, "timeout")
                raise RetryableError(
                    f"model request exceeded {self.options.timeout_s:g}s"
                ) from None
            except MalformedResponseError as exc:
                m.outcome(self.provider, model, "malformed")
                raise RetryableError(f"malformed model response: {exc}") from None
            except PermanentError:
                m.outcome(self.provider, model, "rejected")
                raise
            except Exception as exc:
                outcome, error = self._classify(exc)
                m.outcome(self.provider, model, outcome)
                wait = getattr(error, "retry_after_s", None)
                if outcome == "rate_limited" and wait:
                    until = loop.time() + min(wait, MAX_COOLDOWN_S)
                    self._paused_until = max(self._paused_until, until)
                if outcome in ("rate_limited", "server_error", "rejected"):
                    log.warning(
                        "model_request_failed",
                        provider=self.provider,
                        model=model,
                        outcome=outcome,
                        error_type=type(exc).__name__,
                    )
                raise error from exc
            finally:
                self._metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
        m.outcome(self.provider, model, "ok")
        m.latency.observe(elapsed)
        usage = response.usage
        cost = (
            usage.prompt_tokens * self.options.price_input_per_mtok
            + usage.completion_tokens * self.options.price_output_per_mtok
        ) / 1_000_000
        m.prompt_tokens.inc(usage.prompt_tokens)
        m.completion_tokens.inc(usage.completion_tokens)
        if cost:
            m.cost.inc(cost)
        return replace(
            response,
            usage=CallUsage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost,
                latency_ms=elapsed * 1000.0,
            ),
        )

    @abstractmethod
    async def _send(self, request: ChatRequest, model: str) -> ChatResponse:
        """Make the request through the SDK (no retries); usage without cost/latency."""

    @abstractmethod
    def _classify(self, exc: Exception) -> tuple[str, Exception]:
        """An SDK exception as (outcome label, RetryableError or PermanentError)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the SDK client."""
