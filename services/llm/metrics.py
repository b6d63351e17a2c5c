"""Prometheus metrics of model calls, labelled by provider and model.

Model names come from service settings and task definitions, so the label
sets stay small. Nothing about a request's content is ever a label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "act_llm_requests_total",
    "Model requests by outcome (ok, rate_limited, server_error, timeout, connection, "
    "malformed, rejected).",
    ["provider", "model", "outcome"],
)
TOKENS = Counter(
    "act_llm_tokens_total",
    "Tokens billed, by kind (prompt, completion).",
    ["provider", "model", "kind"],
)
COST = Counter(
    "act_llm_cost_usd_total", "Estimated cost of model calls (USD).", ["provider", "model"]
)
LATENCY = Histogram(
    "act_llm_request_latency_seconds",
    "Wall-clock time of one model request (excluding the wait for a concurrency slot).",
    ["provider", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
QUEUE_WAIT = Histogram(
    "act_llm_queue_wait_seconds",
    "Time a request waited for a concurrency slot.",
    ["provider"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
IN_FLIGHT = Gauge("act_llm_in_flight", "Model requests in flight.", ["provider"])


@dataclass(slots=True)
class ModelMetrics:
    """Resolved metric children of one (provider, model); labels() is costly per call."""

    requests: dict[str, Any]
    prompt_tokens: Any
    completion_tokens: Any
    cost: Any
    latency: Any

    @classmethod
    def of(cls, provider: str, model: str) -> ModelMetrics:
        """Children for one provider and model."""
        return cls(
            requests={},
            prompt_tokens=TOKENS.labels(provider=provider, model=model, kind="prompt"),
            completion_tokens=TOKENS.labels(provider=provider, model=model, kind="completion"),
            cost=COST.labels(provider=provider, model=model),
            latency=LATENCY.labels(provider=provider, model=model),
        )

    def outcome(self, provider: str, model: str, outcome: str) -> None:
        """Count one request with its outcome."""
        child = self.requests.get(outcome)
        if child is None:
            child = self.requests[outcome] = REQUESTS.labels(
                provider=provider, model=model, outcome=outcome
            )
        child.inc()


class MetricsCache:
    """ModelMetrics per model, created on first use."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._by_model: dict[str, ModelMetrics] = {}
        self.queue_wait = QUEUE_WAIT.labels(provider=provider)
        self.in_flight = IN_FLIGHT.labels(provider=provider)

    def model(self, model: str) -> ModelMetrics:
        """Metrics of one model."""
        m = self._by_model.get(model)
        if m is None:
            m = self._by_model[model] = ModelMetrics.of(self.provider, model)
        return m
