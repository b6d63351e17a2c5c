"""Undo: a reviewer takes back a submission whose FinalLabel has not left yet.

A submission made with ``hold_s > 0`` puts its FinalLabel into the outbox with
``available_at_us`` = submission time + ``hold_s``; the relay does not claim
the row before then (:meth:`~.outbox.Outbox.outbox_claim`). Until the relay
claims it, :meth:`Undo.undo` can take the review back:

* only the reviewer's own review, and only while its outbox row is unclaimed
  and unsent (``batch IS NULL AND sent_at_us IS NULL``). The row is deleted
  under exactly that guard: on PostgreSQL the DELETE waits for a relay claim
  holding the row lock and re-checks the guard after it committed (READ
  COMMITTED), and the claim skips a row the undo has locked (``SKIP LOCKED``);
  on SQLite both are exclusive write transactions. So a claim and an undo
  never both win: either the label is published or the review is undone.
  Anything else is FailedPrecondition ("already final");
* in one transaction: the review row and its outbox row are deleted, the
  submitted lease becomes ``undone`` (the state records that its review was
  taken back; a late retry of that submission gets FailedPrecondition), and
  the queue entry goes from ``done`` back to ``leased`` under a fresh active
  lease of the same reviewer, which :meth:`Undo.undo` returns like a lease.
  Nothing else ends (the reviewer's other leases stay); audit ``undone``.

Under overlap a review may have no FinalLabel of its own: the first of two
(the entry went back to ``pending`` for a second reviewer) or a disagreeing
second (the entry is ``disputed``). Nothing left the gateway for those, so
undo is allowed within ``window_s`` of the submission while the entry is
still where the submission put it: ``pending`` (nobody holds it now; a
second reviewer who leased and gave it back has written nothing) or
``disputed`` (no admin decided yet). The entry then goes to a fresh
lease of the reviewer as above, and the item's other review stays.

The review's idempotency key is free again with the review row; the next
submission of the new lease normally uses a new key anyway. A repeated undo
of the same review answers NotFound (the review is gone).

Locks: the submitted lease first (serialises concurrent undos of one review),
then the outbox row, then the queue entry, like every other write.
"""

from __future__ import annotations

from act.v1 import review_pb2
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review_gateway import schema as s
from services.review_gateway.errors import FailedPrecondition, NotFound, PermissionDenied
from services.review_gateway.store.base import StoreCore, audit_row, new_id, now_us, write_audit
from services.review_gateway.store.queue import lock_lease
from services.review_gateway.store.reviews import LABELS_TOPIC
from services.review_gateway.store.rows import Leased

_r, _o, _q, _l, _t = s.reviews, s.outbox, s.queue, s.leases, s.tasks


class Undo:
    """Taking a held submission back."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def undo(
        self, reviewer_id: str, review_id: str, lease_seconds: float, window_s: float = 0.0
    ) -> Leased:
        """Take back the reviewer's review ``review_id`` while its FinalLabel is still
        held (or, for a review without one, within ``window_s`` of its
        submission), and lease its item to the reviewer again (see the module doc)."""
        return await self._core.retrying(
            3, self._undo, reviewer_id, review_id, lease_seconds, window_s
        )

    async def _undo(
        self, reviewer_id: str, review_id: str, lease_seconds: float, window_s: float
    ) -> Leased:
        async with self._core.tx() as conn:
            review = (await conn.execute(select(_r).where(_r.c.review_id == review_id))).first()
            if review is None:
                raise NotFound(f"review {review_id} not found")
            if review.reviewer_id != reviewer_id:
                raise PermissionDenied(f"review {review_id} belongs to another reviewer")
            old = await lock_lease(conn, review.lease_id)
            # A concurrent undo of this review may have won while we waited for the lock.
            still = (
                await conn.execute(select(_r.c.review_id).where(_r.c.review_id == review_id))
            ).first()
            if still is None or old.state != s.SUBMITTED:
                raise FailedPrecondition(f"review {review_id} was already undone")
            at = now_us()
            outbox_id = await _held_label(conn, review_id, review.item_id, review.submitted_at_us)
            entry_guard = [_q.c.state == s.DONE, _q.c.lease_id == old.lease_id]
            if outbox_id is not None:
                withdrawn = (
                    await conn.execute(
                        delete(_o)
                        .where(
                            _o.c.id == outbox_id, _o.c.batch.is_(None), _o.c.sent_at_us.is_(None)
                        )
                        .returning(_o.c.id)
                    )
                ).first()
                if withdrawn is None:
                    # The relay claimed the row between our read and the delete.
                    raise FailedPrecondition(f"review {review_id} is already final")
            elif at <= review.submitted_at_us + int(window_s * 1_000_000):
                # No FinalLabel of its own (overlap): the entry must still be
                # where this submission put it.
                entry_guard = (
                    [_q.c.state == s.PENDING]
                    if review.round == 1
                    else [_q.c.state == s.DISPUTED, _q.c.lease_id == old.lease_id]
                )
            else:
                raise FailedPrecondition(f"review {review_id} is already final")
            deadline = at + int(lease_seconds * 1_000_000)
            lease_id = new_id("ls_")
            await conn.execute(delete(_r).where(_r.c.review_id == review_id))
            await conn.execute(
                update(_l).where(_l.c.lease_id == old.lease_id).values(state=s.UNDONE)
            )
            entry = (
                await conn.execute(
                    update(_q)
                    .where(_q.c.id == old.queue_id, *entry_guard)
                    .values(
                        state=s.LEASED,
                        lease_id=lease_id,
                        lease_deadline_us=deadline,
                        attempts=_q.c.attempts + 1,
                        updated_at_us=at,
                    )
                    .returning(_q.c.request_id, _q.c.task_id, _q.c.item_id, _q.c.request)
                )
            ).first()
            if entry is None:
                # The item moved on (a second reviewer leased it, an admin
                # decided, the agreeing review finalized it); roll back.
                raise FailedPrecondition(f"review {review_id} can no longer be undone")
            await conn.execute(
                insert(_l).values(
                    lease_id=lease_id,
                    queue_id=old.queue_id,
                    request_id=entry.request_id,
                    task_id=entry.task_id,
                    reviewer_id=reviewer_id,
                    leased_at_us=at,
                    deadline_us=deadline,
                    state=s.ACTIVE,
                )
            )
            task = (
                await conn.execute(select(_t.c.task).where(_t.c.task_id == entry.task_id))
            ).scalar_one_or_none()
            if task is None:
                raise FailedPrecondition(f"task of review {review_id} is unknown")
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        reviewer_id,
                        "undone",
                        entry.request_id,
                        lease_id,
                        f"review_id={review_id} undone_lease_id={old.lease_id} "
                        f"label_index={review.label_index} deadline_us={deadline}",
                    )
                ],
            )
        return Leased(
            lease_id=lease_id,
            request_id=entry.request_id,
            item_id=entry.item_id,
            task_id=entry.task_id,
            request=bytes(entry.request),
            task=bytes(task),
            leased_at_us=at,
            deadline_us=deadline,
        )


async def _held_label(
    conn: AsyncConnection, review_id: str, item_id: str, submitted_at_us: int
) -> int | None:
    """The id of the review's FinalLabel row while it is unclaimed and unsent, else None.

    The outbox row has no review column: the submission wrote it with the item
    as key and the submission time as ``created_at_us``, and the FinalLabel it
    carries names the review (which tells apart two tasks' items of one id).
    """
    rows = (
        await conn.execute(
            select(_o.c.id, _o.c.value).where(
                _o.c.sent_at_us.is_(None),
                _o.c.batch.is_(None),
                _o.c.topic == LABELS_TOPIC,
                _o.c.key == item_id,
                _o.c.created_at_us == submitted_at_us,
            )
        )
    ).all()
    for row in rows:
        if review_pb2.FinalLabel.FromString(bytes(row.value)).review_id == review_id:
            return int(row.id)
    return None
