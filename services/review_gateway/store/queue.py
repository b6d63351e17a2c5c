"""The durable review queue and its leases: enqueue, lease, extend, release, skip, expiry.

* **One queue entry per request and per item.** ``queue.request_id`` and
  ``(queue.task_id, queue.item_id)`` are unique and :meth:`Queue.enqueue`
  inserts or ignores, so a ReviewRequest consumed twice (or re-sent by the
  sampler under another request id) is queued once.
* **Two reviewers never hold one entry.** :meth:`Queue.lease` picks a
  ``pending`` entry with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's
  write transaction is exclusive) and marks it ``leased`` in the same
  transaction. A ``done`` or ``disputed`` entry is never leased, nor an
  entry the reviewer has reviewed already (the overlap's second review).
* **Never dropped.** A lease ends as submitted, released, skipped, expired or
  revoked; every end but ``submitted`` returns the entry to ``pending`` in the
  same transaction (:func:`return_to_queue`). A submitted lease whose review
  is taken back becomes ``undone`` and its entry goes from ``done`` to a fresh
  lease of the same reviewer (:mod:`.undo`).
* **Exposure caps.** A reviewer is not leased entries of a task category
  (``queue.category``, the machine label) whose exposure reached the daily
  cap today (UTC; :mod:`.exposure`).
* **Strict leases.** Submitting, extending or skipping needs an ``active``
  lease whose deadline has not passed, checked against the clock even before
  the reaper has run (:func:`require_live`): a late call gets
  FAILED_PRECONDITION even when nobody else has leased the item since. (Being
  lenient would make a label's acceptance depend on reaper timing; the client
  simply leases again.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from act.v1 import review_pb2
from sqlalchemy import (
    BigInteger,
    FromClause,
    Insert,
    LargeBinary,
    String,
    Update,
    bindparam,
    exists,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review_gateway import labels as lbl
from services.review_gateway import schema as s
from services.review_gateway.errors import FailedPrecondition, NotFound, PermissionDenied
from services.review_gateway.store.atomic import AtomicWrite
from services.review_gateway.store.base import (
    StoreCore,
    audit_row,
    new_id,
    now_us,
    write_audit,
)
from services.review_gateway.store.rows import SYSTEM, Leased, LeaseRow, Reviewer, lease_row
from services.review_gateway.store.tasks import Tasks

_q, _t, _sk, _l, _x, _r = s.queue, s.tasks, s.skips, s.leases, s.exposure, s.reviews


def utc_day(at_us: int) -> str:
    """The UTC day ``'YYYY-MM-DD'`` of a time in microseconds (exposure is counted per day)."""
    return datetime.fromtimestamp(at_us / 1_000_000, tz=UTC).strftime("%Y-%m-%d")


def _pick(by_task: bool) -> Insert:
    """Write a lease on the best pending entry a reviewer may lease, locking the entry.

    Best: highest priority, then oldest, among entries whose task is known
    (the join), that the reviewer has neither skipped nor reviewed (an item of
    the overlap share waits for a *second* reviewer), and whose category (the
    machine label) the reviewer has not reached the daily exposure cap of on
    ``p_day`` (an entry of unknown category is never excluded: ``NULL`` equals
    nothing). The exclusions are anti-joins probing a primary key or index per
    candidate, so the plan stays the ordered scan of ``ix_queue_pick``. ``SKIP LOCKED``:
    concurrent leases take different entries instead of waiting for each
    other, and an entry another transaction has just leased fails the
    re-checked ``state = 'pending'`` and is passed over. Inserts nothing when
    no entry is free. ``LIMIT 1`` is literal so that the cached plan of the
    prepared statement is the ordered scan of ``ix_queue_pick``.
    """
    pick = (
        select(
            bindparam("p_lease", type_=String),
            _q.c.id,
            _q.c.request_id,
            _q.c.task_id,
            bindparam("p_reviewer", type_=String),
            bindparam("p_at", type_=BigInteger),
            bindparam("p_deadline", type_=BigInteger),
            literal(s.ACTIVE, String),
        )
        .join(_t, _t.c.task_id == _q.c.task_id)
        .where(_q.c.state == s.PENDING)
        .where(
            ~exists().where(
                _sk.c.request_id == _q.c.request_id,
                _sk.c.reviewer_id == bindparam("p_reviewer"),
            )
        )
        .where(
            ~exists().where(
                _r.c.request_id == _q.c.request_id,
                _r.c.reviewer_id == bindparam("p_reviewer"),
            )
        )
        .where(
            ~exists().where(
                _x.c.reviewer_id == bindparam("p_reviewer"),
                _x.c.task_id == _q.c.task_id,
                _x.c.label_index == _q.c.category,
                _x.c.day == bindparam("p_day", type_=String),
                _x.c.capped.is_(True),
            )
        )
        .order_by(_q.c.priority.desc(), _q.c.id)
        .limit(literal_column("1"))
        .with_for_update(of=_q, skip_locked=True)
    )
    if by_task:
        pick = pick.where(_q.c.task_id == bindparam("p_task"))
    columns = ["lease_id", "queue_id", "request_id", "task_id", "reviewer_id"]
    return insert(_l).from_select([*columns, "leased_at_us", "deadline_us", "state"], pick)


# Written out because SQLAlchemy renders a correlated subquery in SQLite's
# RETURNING without table names (``task_id = task_id``).
_TASK_OF_ENTRY = literal_column(
    "(SELECT tasks.task FROM tasks WHERE tasks.task_id = queue.task_id)", LargeBinary
).label("task")


def _lease_steps(lease: FromClause) -> list[Insert | Update]:
    """After the lease row: mark its entry leased (returning what the reviewer sees), audit."""
    mark = (
        update(_q)
        .where(_q.c.id.in_(select(lease.c.queue_id)))
        .values(
            state=s.LEASED,
            lease_id=bindparam("p_lease"),
            lease_deadline_us=bindparam("p_deadline"),
            attempts=_q.c.attempts + 1,
            updated_at_us=bindparam("p_at"),
        )
        .returning(_q.c.request_id, _q.c.task_id, _q.c.item_id, _q.c.request, _TASK_OF_ENTRY)
    )
    audit = insert(s.audit_log).from_select(
        ["at_us", "actor", "action", "request_id", "lease_id", "detail"],
        select(
            bindparam("p_at", type_=BigInteger),
            bindparam("p_reviewer", type_=String),
            literal("leased", String),
            lease.c.request_id,
            lease.c.lease_id,
            bindparam("p_detail", type_=String),
        ),
    )
    return [mark, audit]


def _lease_write(by_task: bool) -> AtomicWrite:
    return AtomicWrite(
        _pick(by_task),
        returning=[_l.c.lease_id, _l.c.queue_id, _l.c.request_id],
        key=_l.c.lease_id == bindparam("p_lease"),
        steps=_lease_steps,
        result=0,
    )


_LEASE_ANY = _lease_write(by_task=False)
_LEASE_TASK = _lease_write(by_task=True)


async def lock_lease(conn: AsyncConnection, lease_id: str) -> LeaseRow:
    """The lease row, locked for the rest of the transaction; NotFound if unknown."""
    row = (
        await conn.execute(
            select(s.leases).where(s.leases.c.lease_id == lease_id).with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"lease {lease_id} not found")
    return lease_row(row._mapping)


def require_live(lease: LeaseRow, at: int) -> None:
    """FailedPrecondition unless the lease is active and its deadline lies after ``at``."""
    if lease.state != s.ACTIVE:
        raise FailedPrecondition(f"lease {lease.lease_id} is {lease.state}")
    if lease.deadline_us <= at:
        raise FailedPrecondition(f"lease {lease.lease_id} expired")


async def return_to_queue(
    conn: AsyncConnection, leases: Sequence[LeaseRow], new_state: str, at: int
) -> None:
    """End leases without a label and put their entries back to pending."""
    ids = [lease.lease_id for lease in leases]
    if not ids:
        return
    await conn.execute(
        update(s.leases).where(s.leases.c.lease_id.in_(ids)).values(state=new_state, ended_at_us=at)
    )
    queue_ids = sorted({lease.queue_id for lease in leases})
    await conn.execute(
        update(_q)
        .where(_q.c.id.in_(queue_ids), _q.c.lease_id.in_(ids), _q.c.state == s.LEASED)
        .values(state=s.PENDING, lease_id=None, lease_deadline_us=None, updated_at_us=at)
    )


class Queue:
    """Queue entries and the leases on them."""

    def __init__(self, core: StoreCore, tasks: Tasks) -> None:
        self._core = core
        self._tasks = tasks

    async def enqueue(self, request: review_pb2.ReviewRequest, raw: bytes | None = None) -> bool:
        """Queue a review request once; True when it was new.

        Raises :class:`~services.runtime.retry.PermanentError` for a request
        that can never be queued.
        """
        info = lbl.validate_request(request)
        task = lbl.embedded_task(request)
        if task is not None:
            await self._tasks.upsert_task(task, only_if_missing=True)
        payload = raw if raw is not None else request.SerializeToString()
        at = now_us()
        stmt = (
            self._core.insert_ignore(_q)
            .values(
                request_id=info.request_id,
                task_id=info.task_id,
                item_id=info.item_id,
                request=payload,
                state=s.PENDING,
                priority=info.priority,
                attempts=0,
                category=lbl.machine_label(request),
                enqueued_at_us=at,
                updated_at_us=at,
            )
            .returning(_q.c.id)
        )
        async with self._core.tx() as conn:
            inserted = (await conn.execute(stmt)).scalar_one_or_none() is not None
            if inserted:
                await write_audit(conn, [audit_row(at, SYSTEM, "enqueued", info.request_id)])
        if inserted:
            self._core.notify_queue()
        return inserted

    async def lease(self, reviewer_id: str, task_id: str, lease_seconds: float) -> Leased | None:
        """Lease the best pending entry (highest priority, then oldest) or None.

        One atomic write on either back end (:mod:`.atomic`): the lease row on
        the picked entry, the entry marked leased, the audit row. One
        statement and one round trip on PostgreSQL.
        """
        return await self._core.retrying(3, self._lease, reviewer_id, task_id, lease_seconds)

    async def _lease(self, reviewer_id: str, task_id: str, lease_seconds: float) -> Leased | None:
        at = now_us()
        deadline = at + int(lease_seconds * 1_000_000)
        lease_id = new_id("ls_")
        params = {
            "p_lease": lease_id,
            "p_reviewer": reviewer_id,
            "p_task": task_id,
            "p_at": at,
            "p_deadline": deadline,
            "p_day": utc_day(at),
            "p_detail": f"deadline_us={deadline}",
        }
        rows = await self._core.write(_LEASE_TASK if task_id else _LEASE_ANY, params)
        if not rows:
            return None
        row = rows[0]
        return Leased(
            lease_id=lease_id,
            request_id=row["request_id"],
            item_id=row["item_id"],
            task_id=row["task_id"],
            request=bytes(row["request"]),
            task=bytes(row["task"]),
            leased_at_us=at,
            deadline_us=deadline,
        )

    async def extend(self, reviewer_id: str, lease_id: str, lease_seconds: float) -> int:
        """Move an active lease's deadline to now + ``lease_seconds``; returns it."""
        async with self._core.tx() as conn:
            lease = await lock_lease(conn, lease_id)
            if lease.reviewer_id != reviewer_id:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            at = now_us()
            require_live(lease, at)
            deadline = at + int(lease_seconds * 1_000_000)
            await conn.execute(
                update(s.leases).where(s.leases.c.lease_id == lease_id).values(deadline_us=deadline)
            )
            await conn.execute(
                update(_q)
                .where(_q.c.id == lease.queue_id, _q.c.lease_id == lease_id)
                .values(lease_deadline_us=deadline, updated_at_us=at)
            )
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        reviewer_id,
                        "extended",
                        lease.request_id,
                        lease_id,
                        f"deadline_us={deadline}",
                    )
                ],
            )
        return deadline

    async def release(self, actor: Reviewer, lease_id: str) -> None:
        """Give a lease back; the entry is pending again at once.

        Releasing a lease that already ended without a label is a no-op; an
        admin may release anyone's lease.
        """
        async with self._core.tx() as conn:
            lease = await lock_lease(conn, lease_id)
            if lease.reviewer_id != actor.id and not actor.is_admin:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            if lease.state in (s.RELEASED, s.EXPIRED, s.REVOKED):
                return
            if lease.state != s.ACTIVE:
                raise FailedPrecondition(f"lease {lease_id} is {lease.state}")
            at = now_us()
            await return_to_queue(conn, [lease], s.RELEASED, at)
            await write_audit(
                conn, [audit_row(at, actor.id, "released", lease.request_id, lease_id)]
            )
        self._core.notify_queue()

    async def skip(self, reviewer_id: str, lease_id: str, reason_code: int, reason: str) -> None:
        """The reviewer declines the item: it goes back to the queue for others."""
        async with self._core.tx() as conn:
            lease = await lock_lease(conn, lease_id)
            if lease.reviewer_id != reviewer_id:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            at = now_us()
            require_live(lease, at)
            await conn.execute(
                insert(s.skips).values(
                    request_id=lease.request_id,
                    task_id=lease.task_id,
                    reviewer_id=reviewer_id,
                    lease_id=lease_id,
                    reason_code=reason_code,
                    reason=reason,
                    at_us=at,
                )
            )
            await return_to_queue(conn, [lease], s.SKIPPED, at)
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        reviewer_id,
                        "skipped",
                        lease.request_id,
                        lease_id,
                        f"reason_code={reason_code}",
                    )
                ],
            )
        self._core.notify_queue()

    async def expire_leases(self, limit: int = 500) -> int:
        """Reaper: end active leases past their deadline and re-queue their entries."""
        at = now_us()
        async with self._core.tx() as conn:
            rows = (
                await conn.execute(
                    select(s.leases)
                    .where(s.leases.c.state == s.ACTIVE, s.leases.c.deadline_us <= at)
                    .order_by(s.leases.c.deadline_us)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            expired = [lease_row(r._mapping) for r in rows]
            await return_to_queue(conn, expired, s.EXPIRED, at)
            await write_audit(
                conn, [audit_row(at, SYSTEM, "expired", e.request_id, e.lease_id) for e in expired]
            )
        if expired:
            self._core.notify_queue()
        return len(expired)
