"""Prometheus metrics of the batch path, labelled by provider.

Cost per item is ``act_batch_cost_usd_total / act_batch_items_total{outcome="annotated"}``
(``outcome="criticized"`` for a criticizer driver);
the cost already carries the batch discount (``ACT_BATCH_DISCOUNT``, 0.5 at
OpenAI and Anthropic). Counters move after the transaction that publishes
what they count has committed.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS_SUBMITTED = Counter(
    "act_batch_requests_submitted_total", "Requests sent in batches (billed).", ["provider"]
)
RESULTS = Counter(
    "act_batch_results_total",
    "Request results read from ended batches, by outcome "
    "(succeeded, errored, expired, unparseable).",
    ["provider", "outcome"],
)
ITEMS = Counter(
    "act_batch_items_total",
    "Items finished by the batch path (annotated or criticized, retried, dead_lettered).",
    ["provider", "outcome"],
)
BATCHES = Gauge("act_batch_batches", "Open batches by phase.", ["provider", "phase"])
BATCHES_ENDED = Counter(
    "act_batch_batches_ended_total", "Batches ended, by the provider's final status.",
    ["provider", "status"],
)  # fmt: skip
COST = Counter(
    "act_batch_cost_usd_total",
    "USD of succeeded requests at the configured prices times the batch discount.",
    ["provider", "model"],
)
TOKENS = Counter("act_batch_tokens_total", "Tokens of succeeded requests.", ["provider", "kind"])
SUBMIT_FAILURES = Counter(
    "act_batch_submit_failures_total", "Failed submission or lookup attempts.", ["provider"]
)
