"""Watching the stream: each stage's committed count from its ``/metrics``, until done."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

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
    #: Review requests left for a person that still wait (None: none are left for people).
    for_people: int | None = None

    def line(self, total: int, elapsed_s: float) -> str:
        """One progress line."""
        parts = " | ".join(f"{s} {self.committed.get(s, 0):>5}" for s in STAGES)
        return (
            f"[{elapsed_s:6.1f} s] items {total} | {parts} | reviews {self.reviews}"
            + (f" | dead letters {self.dead_letters}" if self.dead_letters else "")
            + (f" | waiting for a person {self.for_people}" if self.for_people is not None else "")
        )

    def outstanding(self, total: int) -> int:
        """Items the trainer does not hold yet (and that are no dead letter)."""
        return total - self.committed.get("trainer", 0) - self.dead_letters


@dataclass(frozen=True)
class PeopleReviews:
    """The review requests the replay reviewer leaves for a person (``--review-in-browser``).

    ``completed`` reads the gateway's count of the task's human-labelled review
    requests (the replay reviewer's and the people's together).
    """

    url: str
    completed: Callable[[], Awaitable[int]]
    remind_every_s: float = 30.0

    async def waiting(self, reviewer: ReplayReviewer) -> int:
        """How many of the items left for people still wait for one (0 when unsure)."""
        left = len(reviewer.left_for_people)
        if not left:
            return 0
        # The replay reviewer's count first: it can only grow before the gateway's
        # is read, so the people's share is never under-counted (a real stall is
        # never taken for a person's pace).
        replayed = reviewer.summary.submitted
        try:
            completed = await self.completed()
        except grpc.aio.AioRpcError:
            return 0
        return max(0, left - max(0, completed - replayed))


def read_progress(services: Supervisor, reviews: int) -> Progress:
    """Scrape every service's committed count and dead letters."""
    committed: dict[str, int] = {}
    dead = 0
    for service in services:
        totals = scrape(service.metrics_port)
        committed[service.name] = counter(totals, COMMITTED)
        dead += counter(totals, DEAD_LETTERS)
    return Progress(committed, dead, reviews)


def only_people_outstanding(progress: Progress, total: int) -> bool:
    """Whether every item the trainer still lacks is one that waits for a person.

    Those items are among the outstanding ones, so no more outstanding than
    waiting means they are all of them.
    """
    waiting = progress.for_people or 0
    return waiting > 0 and progress.outstanding(total) <= waiting


async def stream_until_trained_on(
    services: Supervisor,
    reviewer: ReplayReviewer,
    total: int,
    say: Say,
    *,
    stall_s: float,
    every_s: float = 3.0,
    people: PeopleReviews | None = None,
) -> Progress:
    """Print progress until the trainer holds every item's final label (or a dead letter).

    Raises when a service exits, or when nothing moves for ``stall_s`` seconds
    (a stuck stage would otherwise keep the demo waiting for ever). With
    ``people``, a reminder with the URL every ``people.remind_every_s`` while
    review requests wait for a person, and no stall while only those are
    outstanding (a person takes the time they take).
    """
    started = time.monotonic()
    last_change = started
    last_reminder = -math.inf
    last: tuple[int, ...] = ()
    while True:
        services.check()
        progress = await asyncio.to_thread(read_progress, services, reviewer.summary.submitted)
        if people is not None:
            progress.for_people = await people.waiting(reviewer)
        state = (
            *progress.committed.values(),
            progress.reviews,
            progress.dead_letters,
            progress.for_people or 0,
        )
        now = time.monotonic()
        if state != last:  # one line per change keeps a long run's output readable
            say(progress.line(total, now - started))
            last, last_change = state, now
        if progress.outstanding(total) <= 0:
            return progress
        if people is not None and progress.for_people:
            if now - last_reminder >= people.remind_every_s:
                say(f"   >> {progress.for_people} review request(s) wait for you in the "
                    f"browser: {people.url} (the demo trains once they are reviewed)")  # fmt: skip
                last_reminder = now
            if only_people_outstanding(progress, total):
                last_change = now
        if now - last_change > stall_s:
            logs = services.services[0].log.parent
            raise TimeoutError(f"no progress for {stall_s:.0f} s; the service logs are in {logs}")
        await asyncio.sleep(every_s)
