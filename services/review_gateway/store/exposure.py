"""Reviewer exposure: seconds spent per task category (machine label) and UTC day.

The workspace reports how long a reviewer looked at items; the seconds add up
per ``(reviewer, task, label_index, day)``. Once a day's total reaches the
daily cap, the row is ``capped`` and :mod:`.queue`'s lease pick passes over
entries of that task and category (``queue.category``) for that reviewer
until the UTC day ends. ``capped`` is recomputed from the caller's cap on
every report (a cap raised later lifts it at the next report); a cap <= 0
means no cap.
"""

from __future__ import annotations

import math

from sqlalchemy import Boolean, Float, case, literal, select

from services.review_gateway import schema as s
from services.review_gateway.errors import InvalidArgument
from services.review_gateway.store.base import StoreCore, now_us
from services.review_gateway.store.queue import utc_day
from services.review_gateway.store.rows import ExposureReportRow, ExposureRow

_x, _rv = s.exposure, s.reviewers

#: Most seconds one report may add (a client reports its time in small slices).
MAX_SECONDS_PER_CALL = 3600.0


class Exposure:
    """The ``exposure`` table."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def record_exposure(
        self,
        reviewer_id: str,
        task_id: str,
        label_index: int,
        seconds: float,
        daily_cap_s: float,
        at_us: int | None = None,
    ) -> ExposureRow:
        """Add ``seconds`` to the reviewer's exposure to a category today (UTC);
        the day's total and whether it reached ``daily_cap_s``.

        InvalidArgument for seconds outside [0, 3600] or a negative label index.
        """
        if not (math.isfinite(seconds) and 0.0 <= seconds <= MAX_SECONDS_PER_CALL):
            raise InvalidArgument(f"seconds must lie in [0, {MAX_SECONDS_PER_CALL:g}]")
        if label_index < 0:
            raise InvalidArgument("label_index must be >= 0")
        if not task_id:
            raise InvalidArgument("task_id is required")
        at = now_us() if at_us is None else at_us
        day = utc_day(at)
        cap = float(daily_cap_s) if math.isfinite(daily_cap_s) else 0.0
        stmt = self._core.dialect_insert(_x).values(
            reviewer_id=reviewer_id,
            task_id=task_id,
            label_index=label_index,
            day=day,
            seconds=float(seconds),
            capped=cap > 0 and seconds >= cap,
            updated_at_us=at,
        )
        total = _x.c.seconds + stmt.excluded.seconds
        capped = (
            case((total >= literal(cap, Float), True), else_=False)
            if cap > 0
            else literal(False, Boolean)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[_x.c.reviewer_id, _x.c.task_id, _x.c.label_index, _x.c.day],
            set_={
                "seconds": total,
                "capped": capped,
                "updated_at_us": stmt.excluded.updated_at_us,
            },
        ).returning(_x.c.seconds, _x.c.capped)
        async with self._core.tx() as conn:
            row = (await conn.execute(stmt)).one()
        return ExposureRow(
            reviewer_id=reviewer_id,
            task_id=task_id,
            label_index=label_index,
            day=day,
            seconds_today=float(row.seconds),
            capped=bool(row.capped),
        )

    async def exposure_today(self, reviewer_id: str, at_us: int | None = None) -> list[ExposureRow]:
        """The reviewer's exposure per task and category today (UTC)."""
        day = utc_day(now_us() if at_us is None else at_us)
        async with self._core.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(_x.c.task_id, _x.c.label_index, _x.c.seconds, _x.c.capped)
                    .where(_x.c.reviewer_id == reviewer_id, _x.c.day == day)
                    .order_by(_x.c.task_id, _x.c.label_index)
                )
            ).all()
        return [
            ExposureRow(
                reviewer_id=reviewer_id,
                task_id=r.task_id,
                label_index=r.label_index,
                day=day,
                seconds_today=float(r.seconds),
                capped=bool(r.capped),
            )
            for r in rows
        ]

    async def exposure_report(self, day: str) -> list[ExposureReportRow]:
        """Every reviewer's exposure per task and category on ``day`` ('YYYY-MM-DD', UTC)."""
        async with self._core.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        _x.c.reviewer_id,
                        _rv.c.name,
                        _x.c.task_id,
                        _x.c.label_index,
                        _x.c.seconds,
                        _x.c.capped,
                    )
                    .select_from(_x.outerjoin(_rv, _rv.c.id == _x.c.reviewer_id))
                    .where(_x.c.day == day)
                    .order_by(_x.c.reviewer_id, _x.c.task_id, _x.c.label_index)
                )
            ).all()
        return [
            ExposureReportRow(
                reviewer_id=r.reviewer_id,
                reviewer_name=r.name or "",
                task_id=r.task_id,
                label_index=r.label_index,
                seconds=float(r.seconds),
                capped=bool(r.capped),
            )
            for r in rows
        ]
