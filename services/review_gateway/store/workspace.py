"""Reads (and the one audit write) of the reviewer web workspace.

The page needs a few things the gRPC API does not: the reviewer's own lease
again after a reload or a lost response (so an item is never stranded under
a lease nobody sees), a lease's context for media and exposure, the lists
behind the admin page, and reviewed items with their critic's eps and
inclusion probability for the calibration chart.
"""

from __future__ import annotations

from dataclasses import dataclass

from act.v1 import review_pb2
from sqlalchemy import BigInteger, String, bindparam, func, insert, select

from services.review_gateway import schema as s
from services.review_gateway.labels import machine_label
from services.review_gateway.store.base import StoreCore, now_us
from services.review_gateway.store.rows import Leased, Reviewer, reviewer_row

_l, _q, _t, _r = s.leases, s.queue, s.tasks, s.reviews


@dataclass(frozen=True, slots=True)
class LeaseContext:
    """A lease with its entry's request and the task, for media and exposure."""

    lease_id: str
    reviewer_id: str
    task_id: str
    state: str
    deadline_us: int
    request: bytes
    task: bytes


@dataclass(frozen=True, slots=True)
class ReviewedItem:
    """One human review with what the machine said about the item."""

    task_id: str
    reviewer_id: str
    human_label: int
    machine_label: int
    eps: float
    pi: float
    seconds: float


# The reviewer's oldest live lease (checked on every submission of the page):
# one prepared statement on PostgreSQL's fast path.
_OWN_LEASE = (
    select(
        _l.c.lease_id,
        _l.c.leased_at_us,
        _l.c.deadline_us,
        _q.c.request_id,
        _q.c.item_id,
        _q.c.task_id,
        _q.c.request,
        _t.c.task,
    )
    .join(_q, _q.c.id == _l.c.queue_id)
    .join(_t, _t.c.task_id == _q.c.task_id)
    .where(
        _l.c.reviewer_id == bindparam("p_reviewer", type_=String),
        _l.c.state == s.ACTIVE,
        _l.c.deadline_us > bindparam("p_at", type_=BigInteger),
    )
    .order_by(_l.c.leased_at_us)
    .limit(1)
)
_AUDIT = insert(s.audit_log).values(
    at_us=bindparam("p_at", type_=BigInteger),
    actor=bindparam("p_actor", type_=String),
    action=bindparam("p_action", type_=String),
    request_id=bindparam("p_request", type_=String),
    lease_id=bindparam("p_lease", type_=String),
    detail=bindparam("p_detail", type_=String),
)


class Workspace:
    """Queries of the web workspace (read-only but for :meth:`audit`)."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def own_active_lease(self, reviewer_id: str) -> Leased | None:
        """The reviewer's oldest live lease (resumed after a reload or a lost answer)."""
        rows = await self._core.read(_OWN_LEASE, {"p_reviewer": reviewer_id, "p_at": now_us()})
        if not rows:
            return None
        row = rows[0]
        return Leased(
            lease_id=row["lease_id"],
            request_id=row["request_id"],
            item_id=row["item_id"],
            task_id=row["task_id"],
            request=bytes(row["request"]),
            task=bytes(row["task"]),
            leased_at_us=row["leased_at_us"],
            deadline_us=row["deadline_us"],
        )

    async def lease_context(self, lease_id: str) -> LeaseContext | None:
        """A lease, its request and its task; None for an unknown lease."""
        stmt = (
            select(
                _l.c.lease_id,
                _l.c.reviewer_id,
                _l.c.task_id,
                _l.c.state,
                _l.c.deadline_us,
                _q.c.request,
                _t.c.task,
            )
            .join(_q, _q.c.id == _l.c.queue_id)
            .join(_t, _t.c.task_id == _q.c.task_id)
            .where(_l.c.lease_id == lease_id)
        )
        async with self._core.reader.connect() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        return LeaseContext(
            lease_id=row["lease_id"],
            reviewer_id=row["reviewer_id"],
            task_id=row["task_id"],
            state=row["state"],
            deadline_us=row["deadline_us"],
            request=bytes(row["request"]),
            task=bytes(row["task"]),
        )

    async def list_reviewers(self) -> list[Reviewer]:
        """Every reviewer account, newest first."""
        stmt = select(s.reviewers).order_by(s.reviewers.c.created_at_us.desc())
        async with self._core.reader.connect() as conn:
            return [reviewer_row(r) for r in (await conn.execute(stmt)).all()]

    async def list_task_ids(self) -> list[str]:
        """Ids of the tasks the gateway knows."""
        async with self._core.reader.connect() as conn:
            rows = (await conn.execute(select(_t.c.task_id).order_by(_t.c.task_id))).all()
        return [r.task_id for r in rows]

    async def reviewed_items(self, task_id: str, limit: int = 5000) -> list[ReviewedItem]:
        """The latest ``limit`` reviewed items of a task with the machine's label, eps and pi.

        One row per item (its first review) with the item's human label: the
        admin's decision where two reviews disagreed; disputed items wait for
        it and are left out.
        """
        stmt = (
            select(
                _r.c.task_id,
                _r.c.reviewer_id,
                func.coalesce(s.adjudications.c.label_index, _r.c.label_index).label("label_index"),
                _r.c.leased_at_us,
                _r.c.submitted_at_us,
                _q.c.request,
            )
            .join(_q, _q.c.request_id == _r.c.request_id)
            .outerjoin(s.adjudications, s.adjudications.c.request_id == _r.c.request_id)
            .where(_r.c.task_id == task_id, _r.c.round == 1, _q.c.state != s.DISPUTED)
            .order_by(_r.c.submitted_at_us.desc())
            .limit(limit)
        )
        async with self._core.reader.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        items = []
        for row in rows:
            request = review_pb2.ReviewRequest.FromString(bytes(row["request"]))
            decision = request.decision
            machine = machine_label(request)
            items.append(
                ReviewedItem(
                    task_id=row["task_id"],
                    reviewer_id=row["reviewer_id"],
                    human_label=int(row["label_index"]),
                    machine_label=machine if machine is not None else 0,
                    eps=float(decision.eps),
                    pi=float(decision.pi),
                    seconds=max(0.0, (row["submitted_at_us"] - row["leased_at_us"]) / 1e6),
                )
            )
        return items

    async def count_reviews(self, task_id: str) -> int:
        """Items of a task reviewed so far (the spent part of its review budget).

        An item's second review (the overlap share) is quality control, paid
        beside the budget, and not counted here.
        """
        stmt = select(func.count()).select_from(_r).where(_r.c.task_id == task_id, _r.c.round == 1)
        async with self._core.reader.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def audit(
        self, actor: str, action: str, request_id: str | None, lease_id: str | None, detail: str
    ) -> None:
        """One audit row (ids and flags only, never content); autocommit on PostgreSQL."""
        await self._core.execute(
            _AUDIT,
            {
                "p_at": now_us(),
                "p_actor": actor,
                "p_action": action,
                "p_request": request_id,
                "p_lease": lease_id,
                "p_detail": detail,
            },
        )
