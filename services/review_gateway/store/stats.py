"""Read-only statistics of a task's queue and of a reviewer's work (admin RPCs)."""

from __future__ import annotations

import statistics

from sqlalchemy import func, select

from services.review_gateway import schema as s
from services.review_gateway.errors import NotFound
from services.review_gateway.store.base import StoreCore, now_us
from services.review_gateway.store.reviewers import Reviewers
from services.review_gateway.store.rows import ReviewerStatsRow, TaskStatsRow

#: The median time per review is taken over this many latest reviews.
_MEDIAN_WINDOW = 1001
#: Throughput: reviews submitted within this window (microseconds) are counted.
_HOUR_US = 3600 * 1_000_000


class Stats:
    """Counts over the queue, leases, reviews and skips (never blocks writers)."""

    def __init__(self, core: StoreCore, reviewers: Reviewers) -> None:
        self._core = core
        self._reviewers = reviewers

    async def task_stats(self, task_id: str) -> TaskStatsRow:
        """Counts of one task's queue; NotFound for a task the gateway never saw."""
        q = s.queue
        async with self._core.reader.connect() as conn:
            states = dict(
                (
                    await conn.execute(
                        select(q.c.state, func.count())
                        .where(q.c.task_id == task_id)
                        .group_by(q.c.state)
                    )
                )
                .tuples()
                .all()
            )
            known = (
                await conn.execute(select(s.tasks.c.task_id).where(s.tasks.c.task_id == task_id))
            ).first()
            if not states and known is None:
                raise NotFound(f"task {task_id} not found")
            label_counts = dict(
                (
                    await conn.execute(
                        select(s.reviews.c.label_index, func.count())
                        .where(s.reviews.c.task_id == task_id)
                        .group_by(s.reviews.c.label_index)
                    )
                )
                .tuples()
                .all()
            )
            skipped = (
                await conn.execute(
                    select(func.count()).select_from(s.skips).where(s.skips.c.task_id == task_id)
                )
            ).scalar_one()
            expired = (
                await conn.execute(
                    select(func.count())
                    .select_from(s.leases)
                    .where(s.leases.c.task_id == task_id, s.leases.c.state == s.EXPIRED)
                )
            ).scalar_one()
        return TaskStatsRow(
            task_id=task_id,
            pending=int(states.get(s.PENDING, 0)),
            leased=int(states.get(s.LEASED, 0)),
            completed=int(states.get(s.DONE, 0)),
            skipped=int(skipped),
            expired=int(expired),
            label_counts={int(k): int(v) for k, v in label_counts.items()},
            disputed=int(states.get(s.DISPUTED, 0)),
        )

    async def reviewer_stats(self, reviewer_id: str) -> ReviewerStatsRow:
        """Statistics of one reviewer; NotFound for an unknown id.

        A lease past its deadline counts as expired even before the reaper ran.
        """
        reviewer = await self._reviewers.get_reviewer(reviewer_id)
        if reviewer is None:
            raise NotFound(f"reviewer {reviewer_id} not found")
        at = now_us()
        r, lz = s.reviews, s.leases
        async with self._core.reader.connect() as conn:
            completed, last = (
                await conn.execute(
                    select(func.count(), func.max(r.c.submitted_at_us)).where(
                        r.c.reviewer_id == reviewer_id
                    )
                )
            ).one()
            last_hour = (
                await conn.execute(
                    select(func.count())
                    .select_from(r)
                    .where(r.c.reviewer_id == reviewer_id, r.c.submitted_at_us > at - _HOUR_US)
                )
            ).scalar_one()
            skipped = (
                await conn.execute(
                    select(func.count())
                    .select_from(s.skips)
                    .where(s.skips.c.reviewer_id == reviewer_id)
                )
            ).scalar_one()
            active = (
                await conn.execute(
                    select(func.count())
                    .select_from(lz)
                    .where(
                        lz.c.reviewer_id == reviewer_id,
                        lz.c.state == s.ACTIVE,
                        lz.c.deadline_us > at,
                    )
                )
            ).scalar_one()
            expired = (
                await conn.execute(
                    select(func.count())
                    .select_from(lz)
                    .where(
                        lz.c.reviewer_id == reviewer_id,
                        (lz.c.state == s.EXPIRED)
                        | ((lz.c.state == s.ACTIVE) & (lz.c.deadline_us <= at)),
                    )
                )
            ).scalar_one()
            durations = (
                (
                    await conn.execute(
                        select(r.c.submitted_at_us - r.c.leased_at_us)
                        .where(r.c.reviewer_id == reviewer_id)
                        .order_by(r.c.submitted_at_us.desc())
                        .limit(_MEDIAN_WINDOW)
                    )
                )
                .scalars()
                .all()
            )
        median = statistics.median(durations) / 1e6 if durations else 0.0
        return ReviewerStatsRow(
            reviewer=reviewer,
            completed=int(completed),
            skipped=int(skipped),
            active_leases=int(active),
            expired_leases=int(expired),
            median_seconds_per_review=float(median),
            last_submitted_at_us=None if last is None else int(last),
            reviews_last_hour=int(last_hour),
        )
