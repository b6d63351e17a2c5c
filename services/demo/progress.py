"""Watching the stream: each stage's committed count from its ``/metrics``, until done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.devkit.processes import Supervisor
from services.devkit.scrape import COMMITTED, DEAD_LETTERS, counter, scrape
from services.review_gateway.replay import ReplayReviewer

Say = Callable[[str], None]

#: Stages in pipeline order, as their services report themselves in /metrics.
STAGES = ("annotator", "criticizer", "sampler", "review-gateway", "trainer")


@dataclass
class Progress:
    """Committed inputs per stage and dead letters, from the services' /metrics."""

    committed: dict[str, int]
    dead_letters: int
    reviews: int

    def line(self, total: int, elapsed_s: float) -> str:
        """One progress line."""
        parts = " | ".join(f"{s} {self.committed.get(s, 0):>5}" for s in STAGES)
        return f"[{elapsed_s:6.1f} s] items {total} | {parts} | reviews {self.reviews}" + (
            f" | dead letters {self.dead_letters}" if self.dead_letters else ""
        )


def read_progress(services: Supervisor, reviews: int) -> Progress:
    """Scrape every service's committed count and dead letters."""
    committed: dict[str, int] = {}
    dead = 0
    for service in services:
        totals = scrape(service.metrics_port)
        committed[service.name] = counter(totals, COMMITTED)
        dead += counter(totals, DEAD_LETTERS)
    return Progress(committed, dead, reviews)


async def stream_until_trained_on(
    services: Supervisor,
    reviewer: ReplayReviewer,
    total: int,
    say: Say,
    *,
    stall_s: float,
    every_s: float = 3.0,
) -> Progress:
    """Print progress until the trainer holds every item's final label (or a dead letter).

    Raises when a service exits, or when nothing moves for ``stall_s`` seconds
    (a stuck stage would otherwise keep the demo waiting for ever).
    """
    started = time.monotonic()
    last_change = started
    last: tuple[int, ...] = ()
    while True:
        services.check()
        progress = await asyncio.to_thread(read_progress, services, reviewer.summary.submitted)
        state = (*progress.committed.values(), progress.reviews, progress.dead_letters)
        now = time.monotonic()
        if state != last:  # one line per change keeps a long run's output readable
            say(progress.line(total, now - started))
            last, last_change = state, now
        if progress.committed.get("trainer", 0) + progress.dead_letters >= total:
            return progress
        if now - last_change > stall_s:
            logs = services.services[0].log.parent
            raise TimeoutError(f"no progress for {stall_s:.0f} s; the service logs are in {logs}")
        await asyncio.sleep(every_s)
