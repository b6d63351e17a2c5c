"""Read a service's Prometheus ``/metrics`` and pick out counters.

Every ACT service exposes the runtime's metrics (``services.runtime.metrics``),
e.g. ``act_messages_committed_total{stage=...}``. Parsing goes through
``prometheus_client``'s own text parser, so label escaping, ``_created``
samples and histogram series are handled as Prometheus does.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

COMMITTED = "act_messages_committed_total"
"""Input records whose offsets a stage committed."""

DEAD_LETTERS = "act_dead_letters_total"
"""Records a stage sent to the dead-letter topic."""


def metrics_url(port: int, host: str = "127.0.0.1") -> str:
    """The ``/metrics`` address of a service listening on ``host:port``."""
    return f"http://{host}:{port}/metrics"


def parse_totals(text: str) -> dict[str, float]:
    """Prometheus exposition text to sample values summed by sample name.

    Summing over labels gives a service's total (e.g. dead letters of every
    reason); a counter ``x_total`` appears under that name.
    """
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def parse_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The values of sample ``name`` by label set (labels as sorted pairs)."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def fetch(port: int, *, host: str = "127.0.0.1", timeout: float = 2.0) -> str | None:
    """The raw ``/metrics`` text, or None when the service does not answer."""
    try:
        with urllib.request.urlopen(metrics_url(port, host), timeout=timeout) as reply:  # noqa: S310 (our own http URL)
            return str(reply.read().decode())
    except OSError:  # not listening yet, gone, or too slow: the caller asks again
        return None


def scrape(port: int, *, host: str = "127.0.0.1", timeout: float = 2.0) -> dict[str, float]:
    """A service's samples summed by name; empty when it does not answer."""
    text = fetch(port, host=host, timeout=timeout)
    return {} if text is None else parse_totals(text)


def counter(totals: Mapping[str, float], name: str) -> int:
    """A counter's total from :func:`scrape`'s result (0 when absent), as an int."""
    return int(totals.get(name, 0))
