"""Prometheus metrics of the review gateway (served with the runtime's on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPCS = Counter(
    "act_gateway_rpcs_total", "ReviewService calls by method and status code.", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "act_gateway_rpc_latency_seconds",
    "ReviewService call latency (long polls included).",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ENQUEUED = Counter("act_gateway_enqueued_total", "Review requests queued (duplicates excluded).")
DUPLICATE_REQUESTS = Counter(
    "act_gateway_duplicate_requests_total", "Review requests ignored because already queued."
)
SUBMITTED = Counter("act_gateway_reviews_total", "Human reviews accepted (retries excluded).")
EXPIRED = Counter(
    "act_gateway_leases_expired_total", "Leases that expired and went back to the queue."
)
PUBLISHED = Counter(
    "act_gateway_labels_published_total", "FinalLabels committed to Kafka by the relay."
)
RECOVERED = Counter(
    "act_gateway_outbox_recovered_total",
    "Outbox rows found published by a previous relay (crash between Kafka commit and mark-sent).",
)
OUTBOX_UNSENT = Gauge("act_gateway_outbox_unsent", "Outbox rows not yet published.")
RELAY_LEADER = Gauge(
    "act_gateway_outbox_relay_leader", "1 while this replica runs the outbox relay."
)
