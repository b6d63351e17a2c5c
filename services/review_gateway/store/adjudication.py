"""Overlap's end: disputed items, the admin's adjudication, and review pairs.

An item of a task's overlap share gets two reviews (:mod:`.reviews`); when
they disagree its entry is ``disputed`` and no FinalLabel exists yet.
:meth:`Adjudication.adjudicate` is the admin's decision, in one transaction:

* the entry row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write
  transaction is exclusive), so concurrent decisions on one item run one
  after the other and the later one sees the first;
* an earlier decision answers: the same label is a duplicate (nothing
  written), another label is AlreadyExists. ``adjudications.request_id`` is
  the primary key, a backstop for the same rule;
* otherwise the entry must be ``disputed``; it becomes ``done``, the
  decision is stored, and the FinalLabel (the admin as reviewer, the
  adjudication id as review id) goes into the outbox with the audit row
  ``adjudicated``. So the item ends with exactly one FinalLabel, as every
  other item does.

:meth:`Adjudication.review_pairs` lists the items with two reviews, the
input of the agreement statistics (:mod:`services.core.agreement`).
"""

from __future__ import annotations

from dataclasses import dataclass

from act.v1 import review_pb2, task_pb2
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review_gateway import labels as lbl
from services.review_gateway import schema as s
from services.review_gateway.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.review_gateway.store.base import StoreCore, audit_row, new_id, now_us, write_audit
from services.review_gateway.store.reviews import LABELS_TOPIC
from services.review_gateway.store.rows import (
    Adjudicated,
    DisputeReview,
    DisputeRow,
    Reviewer,
    ReviewPair,
)

_q, _r, _a, _t, _rv = s.queue, s.reviews, s.adjudications, s.tasks, s.reviewers


@dataclass(frozen=True, slots=True)
class DisputedItem:
    """A disputed item with what the adjudication page shows of it."""

    dispute: DisputeRow
    #: act.v1.ReviewRequest bytes (the item, the machine label, the critique).
    request: bytes
    #: act.v1.Task bytes (labels and instructions).
    task: bytes


async def _reviews_of(
    conn: AsyncConnection, request_ids: list[str]
) -> dict[str, list[DisputeReview]]:
    rows = (
        await conn.execute(
            select(
                _r.c.request_id,
                _r.c.review_id,
                _r.c.reviewer_id,
                _rv.c.name,
                _r.c.label_index,
                _r.c.submitted_at_us,
                _r.c.round,
            )
            .select_from(_r.outerjoin(_rv, _rv.c.id == _r.c.reviewer_id))
            .where(_r.c.request_id.in_(request_ids))
            .order_by(_r.c.request_id, _r.c.round)
        )
    ).all()
    found: dict[str, list[DisputeReview]] = {}
    for row in rows:
        found.setdefault(row.request_id, []).append(
            DisputeReview(
                review_id=row.review_id,
                reviewer_id=row.reviewer_id,
                reviewer_name=row.name or row.reviewer_id,
                label_index=int(row.label_index),
                submitted_at_us=int(row.submitted_at_us),
                round=int(row.round),
            )
        )
    return found


class Adjudication:
    """Disputed items and the admin's decisions on them."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def disputes(self, task_id: str = "", *, limit: int = 200) -> list[DisputeRow]:
        """Disputed entries (of one task, or all), oldest first, with their two reviews."""
        stmt = (
            select(_q.c.request_id, _q.c.task_id, _q.c.item_id)
            .where(_q.c.state == s.DISPUTED)
            .order_by(_q.c.updated_at_us, _q.c.id)
            .limit(limit)
        )
        if task_id:
            stmt = stmt.where(_q.c.task_id == task_id)
        async with self._core.reader.connect() as conn:
            entries = (await conn.execute(stmt)).all()
            reviews = await _reviews_of(conn, [e.request_id for e in entries]) if entries else {}
        return [
            DisputeRow(
                request_id=e.request_id,
                task_id=e.task_id,
                item_id=e.item_id,
                reviews=tuple(reviews.get(e.request_id, ())),
            )
            for e in entries
        ]

    async def disputed_item(self, request_id: str) -> DisputedItem | None:
        """A disputed entry with its request and task (None: unknown or not disputed)."""
        stmt = (
            select(_q.c.request_id, _q.c.task_id, _q.c.item_id, _q.c.request, _t.c.task)
            .join(_t, _t.c.task_id == _q.c.task_id)
            .where(_q.c.request_id == request_id, _q.c.state == s.DISPUTED)
        )
        async with self._core.reader.connect() as conn:
            entry = (await conn.execute(stmt)).first()
            if entry is None:
                return None
            reviews = await _reviews_of(conn, [request_id])
        dispute = DisputeRow(
            request_id=entry.request_id,
            task_id=entry.task_id,
            item_id=entry.item_id,
            reviews=tuple(reviews.get(request_id, ())),
        )
        return DisputedItem(dispute=dispute, request=bytes(entry.request), task=bytes(entry.task))

    async def adjudicate(self, actor: Reviewer, request_id: str, label_index: int) -> Adjudicated:
        """An admin decides the label of a disputed item (see the module doc)."""
        if not actor.is_admin:
            raise PermissionDenied("adjudication needs an admin")
        result = await self._core.retrying(3, self._adjudicate, actor, request_id, label_index)
        if not result.duplicate:
            self._core.outbox_changed.set()
        return result

    async def _adjudicate(self, actor: Reviewer, request_id: str, label_index: int) -> Adjudicated:
        async with self._core.tx() as conn:
            entry = (
                await conn.execute(
                    select(_q.c.id, _q.c.state, _q.c.task_id, _q.c.item_id, _q.c.request)
                    .where(_q.c.request_id == request_id)
                    .with_for_update()
                )
            ).first()
            if entry is None:
                raise NotFound(f"request {request_id} not found")
            earlier = (
                await conn.execute(
                    select(_a.c.adjudication_id, _a.c.label_index, _a.c.at_us).where(
                        _a.c.request_id == request_id
                    )
                )
            ).first()
            if earlier is not None:
                if earlier.label_index != label_index:
                    raise AlreadyExists(f"request {request_id} was adjudicated with another label")
                return Adjudicated(earlier.adjudication_id, int(earlier.at_us), duplicate=True)
            if entry.state != s.DISPUTED:
                raise FailedPrecondition(f"request {request_id} is {entry.state}, not disputed")
            task_bytes = (
                await conn.execute(select(_t.c.task).where(_t.c.task_id == entry.task_id))
            ).scalar_one_or_none()
            if task_bytes is None:
                raise FailedPrecondition(f"task of request {request_id} is unknown")
            task = task_pb2.Task.FromString(bytes(task_bytes))
            try:
                lbl.check_label(task, label_index)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            reviews = (await _reviews_of(conn, [request_id])).get(request_id, [])
            first = (
                await conn.execute(
                    select(_r.c.leased_at_us).where(_r.c.request_id == request_id, _r.c.round == 1)
                )
            ).scalar_one_or_none()
            at = now_us()
            adjudication_id = new_id("adj_")
            await conn.execute(
                update(_q)
                .where(_q.c.id == entry.id)
                .values(state=s.DONE, lease_deadline_us=None, updated_at_us=at)
            )
            await conn.execute(
                insert(_a).values(
                    request_id=request_id,
                    adjudication_id=adjudication_id,
                    task_id=entry.task_id,
                    item_id=entry.item_id,
                    admin_id=actor.id,
                    label_index=label_index,
                    at_us=at,
                )
            )
            final = lbl.build_final_label(
                request=review_pb2.ReviewRequest.FromString(bytes(entry.request)),
                task=task,
                review_id=adjudication_id,
                reviewer_id=actor.id,
                human_label=label_index,
                leased_at_us=int(first) if first is not None else at,
                submitted_at_us=at,
            )
            await conn.execute(
                insert(s.outbox).values(
                    topic=LABELS_TOPIC,
                    key=entry.item_id,
                    value=final.SerializeToString(),
                    created_at_us=at,
                )
            )
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        actor.id,
                        "adjudicated",
                        request_id,
                        None,
                        f"adjudication_id={adjudication_id} label_index={label_index} "
                        + " ".join(f"review_id={r.review_id}" for r in reviews),
                    )
                ],
            )
        return Adjudicated(adjudication_id, at, duplicate=False)

    async def review_pairs(self, task_id: str) -> list[ReviewPair]:
        """Every item of ``task_id`` with two reviews, first and second in round order."""
        first, second = _r.alias("first"), _r.alias("second")
        stmt = (
            select(
                first.c.request_id,
                first.c.reviewer_id.label("first_reviewer"),
                first.c.label_index.label("first_label"),
                second.c.reviewer_id.label("second_reviewer"),
                second.c.label_index.label("second_label"),
            )
            .join(second, second.c.request_id == first.c.request_id)
            .where(first.c.task_id == task_id, first.c.round == 1, second.c.round == 2)
            .order_by(first.c.submitted_at_us)
        )
        async with self._core.reader.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            ReviewPair(
                request_id=r.request_id,
                first_reviewer=r.first_reviewer,
                first_label=int(r.first_label),
                second_reviewer=r.second_reviewer,
                second_label=int(r.second_label),
            )
            for r in rows
        ]
