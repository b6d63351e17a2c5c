"""Submissions: the human label of a lease, accepted exactly once.

:meth:`Reviews.submit` reads the lease (with its entry, task and any earlier
review of this lease or with this idempotency key), checks it (owner, earlier
review, label, liveness), then makes one atomic write (:mod:`.atomic`, one
statement on PostgreSQL): guarded by the lease still being the caller's,
active and before its deadline, it ends the lease, writes the review,
completes the queue entry, puts the FinalLabel into the outbox (held until
``available_at_us`` when the submission asks for an undo window, ``hold_s``;
see :mod:`.undo`) and writes the audit row. If the guard fails, the lease
ended between the read and the write (a concurrent submission, the reaper, a
release), for good: the read is repeated and answers.

``reviews.request_id``, ``reviews.lease_id`` and ``reviews.idempotency_key``
are unique, so a retried or concurrent submission cannot make a second review
nor a second outbox row: it gets the first one's answer with
``duplicate = True``. The one race the guard does not order (the same key
sent with two different leases at once) ends in a unique violation; the loser
runs again and answers like a retry.

**Overlap.** An item of a task's overlap share
(:func:`~services.review_gateway.policy.overlap_selected`) needs two reviewers.
The first submission writes review round 1 and returns the entry to
``pending`` without a FinalLabel; the lease query never gives an item to a
reviewer who already reviewed it. The second submission writes round 2 and
either finalizes the item (the labels agree: the FinalLabel is the second
review's) or marks the entry ``disputed`` for an admin
(:mod:`.adjudication`). Which of the three writes runs is decided from the
read (whether the request has an earlier review); the lease guard makes that
read stable, since only the holder of the entry's active lease can add a
review to it. ``(request_id, round)`` is unique, so a review cannot be added
twice in one round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from act.v1 import review_pb2, task_pb2
from sqlalchemy import (
    BigInteger,
    FromClause,
    Insert,
    Integer,
    LargeBinary,
    String,
    Update,
    and_,
    bindparam,
    insert,
    literal,
    select,
    update,
)

from services.review_gateway import labels as lbl
from services.review_gateway import schema as s
from services.review_gateway.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.review_gateway.policy import overlap_selected
from services.review_gateway.store.atomic import AtomicWrite
from services.review_gateway.store.base import INTEGRITY_ERRORS, StoreCore, new_id, now_us
from services.review_gateway.store.queue import require_live
from services.review_gateway.store.rows import (
    OUTCOME_DISPUTED,
    OUTCOME_FINAL,
    OUTCOME_SECOND,
    Submitted,
    lease_row,
)

_l, _q, _t, _r = s.leases, s.queue, s.tasks, s.reviews

#: The outbox topic id of FinalLabels.
LABELS_TOPIC = "labels"

# The lease, its entry and task, any earlier review of this lease, any with
# this key, and the item's review by another lease (the first of two, under
# overlap): each join an index lookup. Outer joins: a lease whose task
# vanished is FailedPrecondition, not NotFound.
_by_lease, _by_key, _other = _r.alias("by_lease"), _r.alias("by_key"), _r.alias("other")
_READ_LEASE = (
    select(
        _l.c.lease_id,
        _l.c.queue_id,
        _l.c.request_id,
        _l.c.task_id,
        _l.c.reviewer_id,
        _l.c.leased_at_us,
        _l.c.deadline_us,
        _l.c.state,
        _q.c.request,
        _q.c.state.label("entry_state"),
        _t.c.task,
        _by_lease.c.review_id,
        _by_lease.c.label_index,
        _by_lease.c.submitted_at_us,
        _by_lease.c.round,
        _by_key.c.lease_id.label("key_lease_id"),
        _other.c.reviewer_id.label("other_reviewer"),
        _other.c.label_index.label("other_label"),
    )
    .select_from(
        _l.outerjoin(_q, _q.c.id == _l.c.queue_id)
        .outerjoin(_t, _t.c.task_id == _q.c.task_id)
        .outerjoin(_by_lease, _by_lease.c.lease_id == _l.c.lease_id)
        .outerjoin(_by_key, _by_key.c.idempotency_key == bindparam("p_key"))
        .outerjoin(
            _other,
            and_(_other.c.request_id == _l.c.request_id, _other.c.lease_id != _l.c.lease_id),
        )
    )
    .where(_l.c.lease_id == bindparam("p_lease"))
)

# The guard: the lease is still the caller's, active and before its deadline.
# It locks the lease row (lease first, then queue entry, as everywhere).
_END_LEASE = (
    update(_l)
    .where(
        _l.c.lease_id == bindparam("p_lease"),
        _l.c.reviewer_id == bindparam("p_reviewer"),
        _l.c.state == s.ACTIVE,
        _l.c.deadline_us > bindparam("p_at"),
    )
    .values(state=s.SUBMITTED, ended_at_us=bindparam("p_at"))
)


def _submit_steps(lease: FromClause, entry_state: str) -> list[Insert | Update]:
    """After the lease ended: the review, the entry's new state, the FinalLabel
    (only when the entry is done), the audit row."""
    review = (
        insert(_r)
        .from_select(
            [
                "review_id",
                "request_id",
                "lease_id",
                "idempotency_key",
                "task_id",
                "item_id",
                "reviewer_id",
                "label_index",
                "leased_at_us",
                "submitted_at_us",
                "round",
            ],
            select(
                bindparam("p_review", type_=String),
                lease.c.request_id,
                lease.c.lease_id,
                bindparam("p_key", type_=String),
                lease.c.task_id,
                bindparam("p_item", type_=String),
                bindparam("p_reviewer", type_=String),
                bindparam("p_label", type_=Integer),
                lease.c.leased_at_us,
                bindparam("p_at", type_=BigInteger),
                bindparam("p_round", type_=Integer),
            ),
        )
        .returning(_r.c.review_id)
    )
    entry = update(_q).where(
        _q.c.id.in_(select(lease.c.queue_id)), _q.c.lease_id == bindparam("p_lease")
    )
    if entry_state == s.PENDING:
        # Waiting for the second reviewer: leasable again, like a released entry.
        entry = entry.values(
            state=s.PENDING, lease_id=None, lease_deadline_us=None, updated_at_us=bindparam("p_at")
        )
    else:
        entry = entry.values(
            state=entry_state, lease_deadline_us=None, updated_at_us=bindparam("p_at")
        )
    label = insert(s.outbox).from_select(
        ["topic", "key", "value", "created_at_us", "available_at_us"],
        select(
            literal(LABELS_TOPIC, String),
            bindparam("p_item", type_=String),
            bindparam("p_value", type_=LargeBinary),
            bindparam("p_at", type_=BigInteger),
            bindparam("p_available", type_=BigInteger),
        ).select_from(lease),
    )
    audit = insert(s.audit_log).from_select(
        ["at_us", "actor", "action", "request_id", "lease_id", "detail"],
        select(
            bindparam("p_at", type_=BigInteger),
            bindparam("p_reviewer", type_=String),
            literal("submitted", String),
            lease.c.request_id,
            lease.c.lease_id,
            bindparam("p_detail", type_=String),
        ),
    )
    if entry_state == s.DONE:
        return [review, entry, label, audit]
    return [review, entry, audit]


def _submit_write(entry_state: str) -> AtomicWrite:
    return AtomicWrite(
        _END_LEASE,
        returning=[_l.c.lease_id, _l.c.queue_id, _l.c.request_id, _l.c.task_id, _l.c.leased_at_us],
        key=_l.c.lease_id == bindparam("p_lease"),
        steps=lambda lease: _submit_steps(lease, entry_state),
        result=0,
    )


#: The write of each outcome: the entry done with its FinalLabel; back to
#: pending for the second reviewer; disputed, for an admin.
_WRITES = {
    OUTCOME_FINAL: _submit_write(s.DONE),
    OUTCOME_SECOND: _submit_write(s.PENDING),
    OUTCOME_DISPUTED: _submit_write(s.DISPUTED),
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """A checked submission: which write, with which parameters."""

    outcome: str
    params: dict[str, Any]


def _earlier_outcome(row: Mapping[str, Any]) -> str:
    """The outcome an earlier submission of this lease had, as the entry shows it now."""
    if row["entry_state"] == s.DISPUTED:
        return OUTCOME_DISPUTED
    if row["round"] == 1 and row["entry_state"] in (s.PENDING, s.LEASED):
        return OUTCOME_SECOND
    return OUTCOME_FINAL


def _earlier(row: Mapping[str, Any], lease_id: str, label_index: int) -> Submitted | None:
    """The answer of an earlier submission, or AlreadyExists when it conflicts."""
    if row["key_lease_id"] is not None and row["key_lease_id"] != lease_id:
        raise AlreadyExists("idempotency key already used for another lease")
    if row["review_id"] is None:
        return None
    if row["label_index"] != label_index:
        raise AlreadyExists(f"lease {lease_id} was already submitted with another label")
    return Submitted(
        review_id=row["review_id"],
        submitted_at_us=row["submitted_at_us"],
        duplicate=True,
        outcome=_earlier_outcome(row),
    )


def _checked(
    rows: Sequence[Mapping[str, Any]],
    reviewer_id: str,
    lease_id: str,
    label_index: int,
    key: str,
    hold_s: float,
) -> Submitted | _Plan:
    """Check a submission against the read lease: an earlier submission's
    answer, a refusal (raised), or the plan of the write."""
    if not rows:
        raise NotFound(f"lease {lease_id} not found")
    entry = rows[0]
    lease = lease_row(entry)
    if lease.reviewer_id != reviewer_id:
        raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
    earlier = _earlier(entry, lease_id, label_index)
    if earlier is not None:
        return earlier
    if entry["request"] is None or entry["task"] is None:
        raise FailedPrecondition(f"task of lease {lease_id} is unknown")
    task = task_pb2.Task.FromString(bytes(entry["task"]))
    try:
        lbl.check_label(task, label_index)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    at = now_us()
    require_live(lease, at)
    request = review_pb2.ReviewRequest.FromString(bytes(entry["request"]))
    item_id = lbl.request_item(request).item_id
    if entry["other_reviewer"] is None:
        round_ = 1
        second = overlap_selected(lease.task_id, item_id, task.review.overlap_fraction)
        outcome = OUTCOME_SECOND if second else OUTCOME_FINAL
    else:
        round_ = 2
        if entry["other_reviewer"] == reviewer_id:
            # The lease query excludes this; kept as a guard of the invariant.
            raise FailedPrecondition(f"reviewer {reviewer_id} already reviewed this item")
        outcome = OUTCOME_FINAL if entry["other_label"] == label_index else OUTCOME_DISPUTED
    review_id = new_id("rev_")
    params: dict[str, Any] = {
        "p_lease": lease_id,
        "p_reviewer": reviewer_id,
        "p_at": at,
        "p_review": review_id,
        "p_key": key,
        "p_item": item_id,
        "p_label": label_index,
        "p_round": round_,
        "p_detail": f"review_id={review_id} label_index={label_index} round={round_} "
        f"outcome={outcome}",
    }
    if outcome == OUTCOME_FINAL:
        final = lbl.build_final_label(
            request=request,
            task=task,
            review_id=review_id,
            reviewer_id=reviewer_id,
            human_label=label_index,
            leased_at_us=lease.leased_at_us,
            submitted_at_us=at,
        )
        params["p_value"] = final.SerializeToString()
        # The undo window: the relay leaves the FinalLabel alone until then.
        params["p_available"] = at + int(hold_s * 1_000_000) if hold_s > 0 else None
    return _Plan(outcome, params)


class Reviews:
    """Accepting human labels."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def submit(
        self,
        reviewer_id: str,
        lease_id: str,
        label_index: int,
        idempotency_key: str,
        hold_s: float = 0.0,
    ) -> Submitted:
        """Accept the human label of a lease, exactly once (see the module doc).

        ``hold_s > 0`` keeps the FinalLabel from the relay for that long (its
        outbox row's ``available_at_us``), the window in which
        :meth:`~.undo.Undo.undo` can take the review back; 0 publishes at once.
        """
        if not math.isfinite(hold_s) or hold_s < 0:
            raise InvalidArgument("hold_s must be a finite number >= 0")
        key = idempotency_key or f"lease:{lease_id}"
        try:
            return await self._submit(reviewer_id, lease_id, label_index, key, hold_s)
        except INTEGRITY_ERRORS:
            # A concurrent submission with the same key (another lease) won
            # the race; answer like a retry would be.
            return await self._core.retrying(
                3, self._submit, reviewer_id, lease_id, label_index, key, hold_s
            )

    async def _submit(
        self, reviewer_id: str, lease_id: str, label_index: int, key: str, hold_s: float
    ) -> Submitted:
        # A lost race (the lease ended between the read and the write) ends it
        # for good, so the second read answers (duplicate, expired, ...).
        for _ in range(2):
            rows = await self._core.read(_READ_LEASE, {"p_lease": lease_id, "p_key": key})
            plan = _checked(rows, reviewer_id, lease_id, label_index, key, hold_s)
            if isinstance(plan, Submitted):
                return plan
            if await self._core.write(_WRITES[plan.outcome], plan.params):
                if plan.outcome == OUTCOME_FINAL:
                    self._core.outbox_changed.set()
                elif plan.outcome == OUTCOME_SECOND:
                    self._core.notify_queue()
                return Submitted(
                    review_id=plan.params["p_review"],
                    submitted_at_us=plan.params["p_at"],
                    duplicate=False,
                    outcome=plan.outcome,
                )
        raise FailedPrecondition(f"lease {lease_id} changed during the submission")
