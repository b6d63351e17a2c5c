"""Admin helpers of the workspace: the active leases, and putting a leased entry back.

Releasing one lease by an admin is :meth:`~.queue.Queue.release`;
:meth:`Admin.requeue` does the same by request id (the admin page lists
entries, not leases): the lease ends ``revoked``, the audit row is ``requeued``.
"""

from __future__ import annotations

from sqlalchemy import select

from services.review_gateway import schema as s
from services.review_gateway.errors import FailedPrecondition, NotFound, PermissionDenied
from services.review_gateway.store.base import StoreCore, audit_row, now_us, write_audit
from services.review_gateway.store.queue import lock_lease, return_to_queue
from services.review_gateway.store.rows import ActiveLeaseRow, Reviewer

_l, _q, _rv = s.leases, s.queue, s.reviewers


class Admin:
    """Reading and forcing the queue's leases."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def active_leases(self, task_id: str = "", *, limit: int = 1000) -> list[ActiveLeaseRow]:
        """Active leases (of one task, or all), oldest first, with their reviewer's name.

        A lease past its deadline is listed until the reaper ends it.
        """
        stmt = (
            select(
                _l.c.lease_id,
                _l.c.request_id,
                _l.c.task_id,
                _q.c.item_id,
                _l.c.reviewer_id,
                _rv.c.name,
                _l.c.leased_at_us,
                _l.c.deadline_us,
            )
            .select_from(
                _l.outerjoin(_q, _q.c.id == _l.c.queue_id).outerjoin(
                    _rv, _rv.c.id == _l.c.reviewer_id
                )
            )
            .where(_l.c.state == s.ACTIVE)
            .order_by(_l.c.leased_at_us, _l.c.lease_id)
            .limit(limit)
        )
        if task_id:
            stmt = stmt.where(_l.c.task_id == task_id)
        async with self._core.reader.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            ActiveLeaseRow(
                lease_id=r.lease_id,
                request_id=r.request_id,
                task_id=r.task_id,
                item_id=r.item_id or "",
                reviewer_id=r.reviewer_id,
                reviewer_name=r.name or "",
                leased_at_us=r.leased_at_us,
                deadline_us=r.deadline_us,
            )
            for r in rows
        ]

    async def requeue(self, actor: Reviewer, request_id: str) -> bool:
        """An admin puts a leased entry back to pending, revoking its active lease.

        True when a lease was revoked; False when the entry was pending
        already. NotFound for an unknown request, FailedPrecondition for an
        entry that is done, PermissionDenied unless ``actor`` is an admin.
        """
        if not actor.is_admin:
            raise PermissionDenied("requeue needs an admin")
        # The entry's lease may end or change between reading the entry and
        # locking the lease (lease first, then entry): read again then.
        for _ in range(3):
            async with self._core.tx() as conn:
                entry = (
                    await conn.execute(
                        select(_q.c.id, _q.c.state, _q.c.lease_id).where(
                            _q.c.request_id == request_id
                        )
                    )
                ).first()
                if entry is None:
                    raise NotFound(f"request {request_id} not found")
                if entry.state == s.PENDING:
                    return False
                if entry.state != s.LEASED or entry.lease_id is None:
                    raise FailedPrecondition(f"request {request_id} is {entry.state}")
                lease = await lock_lease(conn, entry.lease_id)
                if lease.state != s.ACTIVE or lease.queue_id != entry.id:
                    continue
                at = now_us()
                await return_to_queue(conn, [lease], s.REVOKED, at)
                await write_audit(
                    conn,
                    [
                        audit_row(
                            at,
                            actor.id,
                            "requeued",
                            request_id,
                            lease.lease_id,
                            f"reviewer_id={lease.reviewer_id}",
                        )
                    ],
                )
            self._core.notify_queue()
            return True
        raise FailedPrecondition(f"request {request_id} changed during the requeue")
