"""Prometheus metrics of the runtime, labelled by stage.

Names follow Prometheus conventions; every service exposes them on
``/metrics`` (port ``metrics_port``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CONSUMED = Counter("act_messages_consumed_total", "Records taken from the input topic.", ["stage"])
PRODUCED = Counter(
    "act_messages_produced_total", "Records committed to output topics.", ["stage", "topic"]
)
COMMITTED = Counter(
    "act_messages_committed_total", "Input records whose offsets were committed.", ["stage"]
)
IN_FLIGHT = Gauge("act_in_flight", "Handlers running now.", ["stage"])
BUFFERED = Gauge("act_buffered", "Completed records awaiting their transaction.", ["stage"])
RETRIES = Counter("act_retries_total", "Handler attempts that failed and were retried.", ["stage"])
DEAD_LETTERS = Counter(
    "act_dead_letters_total", "Records sent to the dead-letter topic.", ["stage", "reason"]
)
LAG = Gauge("act_consumer_lag", "High watermark minus position.", ["stage", "partition"])
HANDLER_LATENCY = Histogram(
    "act_handler_latency_seconds",
    "Time from dispatch to a final outcome, retries included.",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TXN_LATENCY = Histogram(
    "act_transaction_latency_seconds",
    "Time to produce a batch and commit its transaction.",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
RECOVERIES = Counter(
    "act_transaction_recoveries_total", "Transactions failed and recovered.", ["stage"]
)


def start_metrics_server(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (0 disables it)."""
    if port:
        start_http_server(port)
