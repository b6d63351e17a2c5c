"""services.devkit.scrape against a real prometheus_client registry served over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)

from services.devkit.processes import free_port
from services.devkit.scrape import (
    COMMITTED,
    DEAD_LETTERS,
    counter,
    fetch,
    metrics_url,
    parse_samples,
    parse_totals,
    scrape,
)


@dataclass
class Served:
    port: int
    registry: CollectorRegistry
    committed: Counter


@pytest.fixture
def served() -> Iterator[Served]:
    """A registry shaped like the runtime's metrics, served on a free port."""
    registry = CollectorRegistry()
    committed = Counter(COMMITTED, "Committed.", ["stage"], registry=registry)
    dead = Counter(DEAD_LETTERS, "Dead letters.", ["stage", "reason"], registry=registry)
    latency = Histogram("act_handler_latency_seconds", "Latency.", ["stage"], registry=registry)
    committed.labels(stage="sampler").inc(40)
    committed.labels(stage='odd "stage"\n').inc(2)  # escaped label value
    dead.labels(stage="sampler", reason="decode").inc(3)
    dead.labels(stage="sampler", reason="timeout").inc(1)
    latency.labels(stage="sampler").observe(0.02)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield Served(port, registry, committed)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_scrape_sums_each_counter_over_its_labels(served: Served) -> None:
    port = served.port
    totals = scrape(port)
    assert counter(totals, COMMITTED) == 42
    assert counter(totals, DEAD_LETTERS) == 4
    assert totals["act_handler_latency_seconds_count"] == 1.0
    # The _created timestamps are their own samples, not added to the counter.
    assert totals[COMMITTED] == 42.0 and f"{COMMITTED[: -len('_total')]}_created" in totals
    assert counter(totals, "act_not_exported_total") == 0


def test_scrape_follows_the_registry(served: Served) -> None:
    port = served.port
    before = counter(scrape(port), COMMITTED)
    served.committed.labels(stage="trainer").inc(5)
    assert counter(scrape(port), COMMITTED) == before + 5


def test_samples_by_label_set(served: Served) -> None:
    port = served.port
    text = fetch(port)
    assert text is not None
    by_labels = parse_samples(text, DEAD_LETTERS)
    assert by_labels == {
        (("reason", "decode"), ("stage", "sampler")): 3.0,
        (("reason", "timeout"), ("stage", "sampler")): 1.0,
    }
    assert parse_samples(text, COMMITTED)[(("stage", 'odd "stage"\n'),)] == 2.0


def test_parse_totals_matches_the_exposition(served: Served) -> None:
    port, registry = served.port, served.registry
    assert parse_totals(generate_latest(registry).decode()) == scrape(port)


def test_a_service_that_does_not_answer_gives_nothing() -> None:
    port = free_port()  # nothing listens here
    assert fetch(port, timeout=1) is None
    assert scrape(port, timeout=1) == {}
    assert metrics_url(port) == f"http://127.0.0.1:{port}/metrics"
