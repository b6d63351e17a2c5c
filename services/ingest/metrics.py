"""Prometheus metrics of the ingest service (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ITEMS = Counter(
    "act_ingest_items_total",
    "Streamed items by outcome (accepted, duplicate, refused) and status code.",
    ["outcome", "code"],
)
RPCS = Counter(
    "act_ingest_rpcs_total", "IngestService calls by method and status code.", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "act_ingest_rpc_seconds", "IngestService call duration by method.", ["method"]
)
CLAIM_CHECKED = Counter(
    "act_ingest_claim_checked_total", "Images stored in the claim-check store (sent as image_uri)."
)
