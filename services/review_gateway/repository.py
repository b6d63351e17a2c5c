"""The review gateway's durable state: queue, leases, reviews, outbox, audit log.

Every public method is one database transaction. The invariants the rest of
the gateway relies on:

* **One queue entry per request and per item.** ``queue.request_id`` and
  ``(queue.task_id, queue.item_id)`` are unique and :meth:`ReviewStore.enqueue`
  inserts or ignores, so a ReviewRequest consumed twice (or re-sent by the
  sampler under another request id) is queued once.
* **One review per queue entry, written with its label.** :meth:`submit` writes
  the review, completes the queue entry, ends the lease and inserts the
  FinalLabel into the outbox in one transaction. ``reviews.request_id``,
  ``reviews.lease_id`` and ``reviews.idempotency_key`` are unique, so a retried
  or concurrent submission cannot make a second review or a second label; it
  gets the first one's answer with ``duplicate = True``.
* **Never served again after a label.** A ``done`` entry is never leased; only
  ``pending`` entries are.
* **Never dropped.** A lease ends as submitted, released, skipped, expired or
  revoked; every end but ``submitted`` returns the entry to ``pending`` in the
  same transaction.
* **Strict leases.** Submitting, extending or skipping needs an ``active`` lease
  whose deadline has not passed, checked against the clock even before the
  reaper has run: a late submission gets FAILED_PRECONDITION even when nobody
  else has leased the item since. (Being lenient there would make a label's
  acceptance depend on reaper timing; the client simply leases again.)

Concurrency: PostgreSQL runs at READ COMMITTED and serialises on row locks
(``SELECT ... FOR UPDATE``; leasing uses ``SKIP LOCKED`` so concurrent
reviewers never wait for each other). Locks are always taken lease first, then
queue entry. SQLite serialises whole transactions (``BEGIN IMMEDIATE`` plus an
in-process lock): it is the single-replica embedded default.

On PostgreSQL, Lease and Submit (the calls every review makes) take a fast
path: each write is ONE statement of data-modifying CTEs, run in autocommit
on a raw psycopg connection (:mod:`~services.review_gateway.pgpool`). A
statement is atomic, so the invariants above hold; its sub-statements only act
on the rows the guarded first one (``... WHERE state = 'active' AND
deadline_us > now``) returned, so a lost race writes nothing and falls back to
the locking path, which then reports the precise outcome (duplicate, expired,
...).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from act.v1 import review_pb2, task_pb2
from psycopg.rows import dict_row
from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.review_gateway import labels as lbl
from services.review_gateway import schema as s
from services.review_gateway.db import READ_ONLY_OPTION
from services.review_gateway.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.review_gateway.pgpool import PgConnectionPool

ROLE_REVIEWER = "reviewer"
ROLE_ADMIN = "admin"
SYSTEM = "system"


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def new_id(prefix: str) -> str:
    """A random id with a readable prefix (``ls_``, ``rev_``, ``usr_``)."""
    return f"{prefix}{uuid.uuid4().hex}"


# --------------------------------------------------------------------------
# PostgreSQL fast paths (raw psycopg, see pgpool): one statement, one round
# trip, autocommit, per write.
# Data-modifying CTEs run atomically as one statement; each sub-statement only
# acts on the rows the first one returned, so a lost race writes nothing.

_PG_LEASE = """
WITH picked AS (
  SELECT q.id FROM queue q
  WHERE q.state = 'pending' {task_filter}
    AND EXISTS (SELECT 1 FROM tasks t WHERE t.task_id = q.task_id)
    AND NOT EXISTS (
      SELECT 1 FROM skips sk WHERE sk.request_id = q.request_id AND sk.reviewer_id = %(reviewer)s
    )
  ORDER BY q.priority DESC, q.id
  LIMIT 1
  FOR UPDATE OF q SKIP LOCKED
), upd AS (
  UPDATE queue q
  SET state = 'leased', lease_id = %(lease_id)s, lease_deadline_us = %(deadline)s,
      attempts = q.attempts + 1, updated_at_us = %(at)s
  FROM picked WHERE q.id = picked.id
  RETURNING q.id, q.request_id, q.task_id, q.item_id, q.request
), ins AS (
  INSERT INTO leases
    (lease_id, queue_id, request_id, task_id, reviewer_id, leased_at_us, deadline_us, state)
  SELECT %(lease_id)s, id, request_id, task_id, %(reviewer)s, %(at)s, %(deadline)s, 'active'
  FROM upd
), aud AS (
  INSERT INTO audit_log (at_us, actor, action, request_id, lease_id, detail)
  SELECT %(at)s, %(reviewer)s, 'leased', request_id, %(lease_id)s, %(detail)s FROM upd
)
SELECT upd.id, upd.request_id, upd.task_id, upd.item_id, upd.request, t.task
FROM upd JOIN tasks t ON t.task_id = upd.task_id
"""
PG_LEASE_ANY = _PG_LEASE.format(task_filter="")
PG_LEASE_TASK = _PG_LEASE.format(task_filter="AND q.task_id = %(task_id)s")

PG_SUBMIT_READ = """
SELECT l.lease_id, l.queue_id, l.request_id, l.task_id, l.reviewer_id, l.leased_at_us,
       l.deadline_us, l.state, q.request, t.task,
       r.review_id AS r_review_id, r.label_index AS r_label_index,
       r.submitted_at_us AS r_submitted_at_us
FROM leases l
JOIN queue q ON q.id = l.queue_id
JOIN tasks t ON t.task_id = q.task_id
LEFT JOIN reviews r ON r.lease_id = l.lease_id
WHERE l.lease_id = %(lease_id)s
"""

PG_SUBMIT_WRITE = """
WITH l AS (
  UPDATE leases SET state = 'submitted', ended_at_us = %(at)s
  WHERE lease_id = %(lease_id)s AND reviewer_id = %(reviewer)s AND state = 'active'
    AND deadline_us > %(at)s
  RETURNING lease_id, queue_id, request_id, task_id, leased_at_us
), q AS (
  UPDATE queue SET state = 'done', lease_deadline_us = NULL, updated_at_us = %(at)s
  FROM l WHERE queue.id = l.queue_id AND queue.lease_id = l.lease_id
  RETURNING queue.id
), r AS (
  INSERT INTO reviews (review_id, request_id, lease_id, idempotency_key, task_id, item_id,
                       reviewer_id, label_index, leased_at_us, submitted_at_us)
  SELECT %(review_id)s, l.request_id, l.lease_id, %(key)s, l.task_id, %(item_id)s,
         %(reviewer)s, %(label)s, l.leased_at_us, %(at)s FROM l
  RETURNING review_id
), o AS (
  INSERT INTO outbox (topic, key, value, created_at_us)
  SELECT 'labels', %(item_id)s, %(value)s, %(at)s FROM l
), a AS (
  INSERT INTO audit_log (at_us, actor, action, request_id, lease_id, detail)
  SELECT %(at)s, %(reviewer)s, 'submitted', l.request_id, l.lease_id, %(detail)s FROM l
)
SELECT (SELECT count(*) FROM r) AS reviews, (SELECT count(*) FROM q) AS entries
"""


@dataclass(frozen=True, slots=True)
class Reviewer:
    """A reviewer account (the token itself is never stored)."""

    id: str
    name: str
    role: str
    disabled: bool
    created_at_us: int

    @property
    def is_admin(self) -> bool:
        """Admins manage reviewers and read every statistic."""
        return self.role == ROLE_ADMIN


@dataclass(frozen=True, slots=True)
class Leased:
    """A granted lease and what the reviewer needs to label the item."""

    lease_id: str
    request_id: str
    item_id: str
    task_id: str
    request: bytes
    task: bytes
    leased_at_us: int
    deadline_us: int


@dataclass(frozen=True, slots=True)
class Submitted:
    """Outcome of a submission (``duplicate``: an earlier submission's result)."""

    review_id: str
    submitted_at_us: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One record waiting to be published."""

    id: int
    topic: str
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class TaskStatsRow:
    """Queue statistics of one task."""

    task_id: str
    pending: int
    leased: int
    completed: int
    skipped: int
    expired: int
    label_counts: dict[int, int]


@dataclass(frozen=True, slots=True)
class ReviewerStatsRow:
    """Statistics of one reviewer."""

    reviewer: Reviewer
    completed: int
    skipped: int
    active_leases: int
    expired_leases: int
    median_seconds_per_review: float
    last_submitted_at_us: int | None


@dataclass(frozen=True, slots=True)
class _LeaseRow:
    lease_id: str
    queue_id: int
    request_id: str
    task_id: str
    reviewer_id: str
    leased_at_us: int
    deadline_us: int
    state: str


class ReviewStore:
    """Transactions over the gateway's tables (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine, *, schema: str = "", hot_pool_size: int = 20) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        #: Read-only work (statistics, token lookups): a plain deferred BEGIN on SQLite.
        self._reader = engine.execution_options(**{READ_ONLY_OPTION: True})
        #: Raw psycopg connections for the lease/submit fast paths (PostgreSQL).
        self._hot: PgConnectionPool | None = None
        if not self.sqlite:
            conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._hot = PgConnectionPool(conninfo, hot_pool_size, schema)
        self._write_lock = asyncio.Lock() if self.sqlite else None
        #: Set whenever an entry may have become leasable (long polls wait on it).
        self.queue_changed = asyncio.Event()
        #: Set whenever an outbox row was added (wakes the relay early).
        self.outbox_changed = asyncio.Event()

    async def close(self) -> None:
        """Close the connection pools."""
        if self._hot is not None:
            await self._hot.close()
        await self.engine.dispose()

    # ------------------------------------------------------------ plumbing

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def _retrying(self, attempts: int, fn: Any, *args: Any) -> Any:
        """Run a transaction, retrying on unique-key races and lock timeouts."""
        for attempt in range(1, attempts + 1):
            try:
                return await fn(*args)
            except (
                IntegrityError,
                OperationalError,
                psycopg.IntegrityError,
                psycopg.OperationalError,
            ):
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def _insert_ignore(self, table: Any) -> Any:
        if self.sqlite:
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    def _notify(self) -> None:
        self.queue_changed.set()

    @staticmethod
    async def _audit(
        conn: AsyncConnection,
        rows: Sequence[dict[str, Any]],
    ) -> None:
        if rows:
            await conn.execute(insert(s.audit_log), list(rows))

    @staticmethod
    def _audit_row(
        at_us: int,
        actor: str,
        action: str,
        request_id: str | None = None,
        lease_id: str | None = None,
        detail: str = "",
    ) -> dict[str, Any]:
        return {
            "at_us": at_us,
            "actor": actor,
            "action": action,
            "request_id": request_id,
            "lease_id": lease_id,
            "detail": detail,
        }

    # --------------------------------------------------------------- tasks

    async def upsert_task(self, task: task_pb2.Task, *, only_if_missing: bool = False) -> None:
        """Remember a task's label set (from act.tasks or an embedded snapshot)."""
        if not task.task_id or len(task.labels) == 0:
            return
        values = {
            "task_id": task.task_id,
            "num_labels": len(task.labels),
            "task": task.SerializeToString(),
            "updated_at_us": now_us(),
        }
        stmt: Any
        if self.sqlite:
            stmt = sqlite.insert(s.tasks).values(**values)
        else:
            stmt = postgresql.insert(s.tasks).values(**values)
        if only_if_missing:
            stmt = stmt.on_conflict_do_nothing()
        else:
            stmt = stmt.on_conflict_do_update(
                index_elements=[s.tasks.c.task_id],
                set_={k: stmt.excluded[k] for k in ("num_labels", "task", "updated_at_us")},
            )
        async with self._tx() as conn:
            await conn.execute(stmt)
        self._notify()

    async def get_task(self, task_id: str) -> task_pb2.Task | None:
        """The stored task, or None."""
        async with self._reader.connect() as conn:
            raw = (
                await conn.execute(select(s.tasks.c.task).where(s.tasks.c.task_id == task_id))
            ).scalar_one_or_none()
        return None if raw is None else task_pb2.Task.FromString(raw)

    # --------------------------------------------------------------- queue

    async def enqueue(self, request: review_pb2.ReviewRequest, raw: bytes | None = None) -> bool:
        """Queue a review request once; True when it was new.

        Raises :class:`~services.runtime.retry.PermanentError` for a request
        that can never be queued.
        """
        info = lbl.validate_request(request)
        task = lbl.embedded_task(request)
        if task is not None:
            await self.upsert_task(task, only_if_missing=True)
        payload = raw if raw is not None else request.SerializeToString()
        at = now_us()
        stmt = (
            self._insert_ignore(s.queue)
            .values(
                request_id=info.request_id,
                task_id=info.task_id,
                item_id=info.item_id,
                request=payload,
                state=s.PENDING,
                priority=info.priority,
                attempts=0,
                enqueued_at_us=at,
                updated_at_us=at,
            )
            .returning(s.queue.c.id)
        )
        async with self._tx() as conn:
            inserted = (await conn.execute(stmt)).scalar_one_or_none() is not None
            if inserted:
                await self._audit(
                    conn, [self._audit_row(at, SYSTEM, "enqueued", request_id=info.request_id)]
                )
        if inserted:
            self._notify()
        return inserted

    async def lease(self, reviewer_id: str, task_id: str, lease_seconds: float) -> Leased | None:
        """Lease the best pending entry (highest priority, then oldest) or None."""
        if self.sqlite:
            return await self._retrying(3, self._lease, reviewer_id, task_id, lease_seconds)  # type: ignore[no-any-return]
        return await self._retrying(3, self._lease_pg, reviewer_id, task_id, lease_seconds)  # type: ignore[no-any-return]

    async def _lease_pg(
        self, reviewer_id: str, task_id: str, lease_seconds: float
    ) -> Leased | None:
        at = now_us()
        deadline = at + int(lease_seconds * 1_000_000)
        lease_id = new_id("ls_")
        params: dict[str, Any] = {
            "reviewer": reviewer_id,
            "lease_id": lease_id,
            "deadline": deadline,
            "at": at,
            "detail": f"deadline_us={deadline}",
        }
        if task_id:
            params["task_id"] = task_id
        assert self._hot is not None
        async with self._hot.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(PG_LEASE_TASK if task_id else PG_LEASE_ANY, params)
            row = await cur.fetchone()
        if row is None:
            return None
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

    async def _lease(self, reviewer_id: str, task_id: str, lease_seconds: float) -> Leased | None:
        q, t, sk = s.queue, s.tasks, s.skips
        pick = (
            select(q.c.id, q.c.request_id, q.c.task_id, q.c.item_id, q.c.request, t.c.task)
            .join(t, t.c.task_id == q.c.task_id)
            .where(q.c.state == s.PENDING)
            .where(
                ~exists().where(
                    and_(sk.c.request_id == q.c.request_id, sk.c.reviewer_id == reviewer_id)
                )
            )
            .order_by(q.c.priority.desc(), q.c.id)
            .limit(1)
            .with_for_update(of=q, skip_locked=True)
        )
        if task_id:
            pick = pick.where(q.c.task_id == task_id)
        async with self._tx() as conn:
            row = (await conn.execute(pick)).first()
            if row is None:
                return None
            at = now_us()
            deadline = at + int(lease_seconds * 1_000_000)
            lease_id = new_id("ls_")
            await conn.execute(
                update(q)
                .where(q.c.id == row.id)
                .values(
                    state=s.LEASED,
                    lease_id=lease_id,
                    lease_deadline_us=deadline,
                    attempts=q.c.attempts + 1,
                    updated_at_us=at,
                )
            )
            await conn.execute(
                insert(s.leases).values(
                    lease_id=lease_id,
                    queue_id=row.id,
                    request_id=row.request_id,
                    task_id=row.task_id,
                    reviewer_id=reviewer_id,
                    leased_at_us=at,
                    deadline_us=deadline,
                    state=s.ACTIVE,
                )
            )
            await self._audit(
                conn,
                [
                    self._audit_row(
                        at,
                        reviewer_id,
                        "leased",
                        row.request_id,
                        lease_id,
                        f"deadline_us={deadline}",
                    )
                ],
            )
        return Leased(
            lease_id=lease_id,
            request_id=row.request_id,
            item_id=row.item_id,
            task_id=row.task_id,
            request=row.request,
            task=row.task,
            leased_at_us=at,
            deadline_us=deadline,
        )

    async def _lock_lease(self, conn: AsyncConnection, lease_id: str) -> _LeaseRow:
        row = (
            await conn.execute(
                select(s.leases).where(s.leases.c.lease_id == lease_id).with_for_update()
            )
        ).first()
        if row is None:
            raise NotFound(f"lease {lease_id} not found")
        return _lease_row(row)

    @staticmethod
    def _require_live(lease: _LeaseRow, at: int) -> None:
        if lease.state != s.ACTIVE:
            raise FailedPrecondition(f"lease {lease.lease_id} is {lease.state}")
        if lease.deadline_us <= at:
            raise FailedPrecondition(f"lease {lease.lease_id} expired")

    async def _return_to_queue(
        self, conn: AsyncConnection, leases: Sequence[_LeaseRow], new_state: str, at: int
    ) -> None:
        """End leases without a label and put their entries back to pending."""
        ids = [lease.lease_id for lease in leases]
        if not ids:
            return
        await conn.execute(
            update(s.leases)
            .where(s.leases.c.lease_id.in_(ids))
            .values(state=new_state, ended_at_us=at)
        )
        queue_ids = sorted({lease.queue_id for lease in leases})
        await conn.execute(
            update(s.queue)
            .where(
                s.queue.c.id.in_(queue_ids),
                s.queue.c.lease_id.in_(ids),
                s.queue.c.state == s.LEASED,
            )
            .values(state=s.PENDING, lease_id=None, lease_deadline_us=None, updated_at_us=at)
        )

    # -------------------------------------------------------------- submit

    async def submit(
        self, reviewer_id: str, lease_id: str, label_index: int, idempotency_key: str
    ) -> Submitted:
        """Accept the human label of a lease, exactly once (see the module doc)."""
        key = idempotency_key or f"lease:{lease_id}"
        try:
            if not self.sqlite:
                fast = await self._submit_pg(reviewer_id, lease_id, label_index, key)
                if fast is not None:
                    return fast
            return await self._submit(reviewer_id, lease_id, label_index, key)
        except (IntegrityError, psycopg.IntegrityError):
            # A concurrent submission with the same key (another lease) or of
            # the same lease won the race; answer like a retry would be.
            return await self._retrying(3, self._submit, reviewer_id, lease_id, label_index, key)  # type: ignore[no-any-return]

    async def _submit_pg(
        self, reviewer_id: str, lease_id: str, label_index: int, key: str
    ) -> Submitted | None:
        """PostgreSQL: read, then one atomic write statement (two round trips).

        Returns None when the locking path must decide (a previous review
        exists, or the lease is no longer live or changed between the read and
        the write); raises the same errors as that path for the other refusals.
        """
        assert self._hot is not None
        async with self._hot.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(PG_SUBMIT_READ, {"lease_id": lease_id})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"lease {lease_id} not found")
            if row["reviewer_id"] != reviewer_id:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            if row["r_review_id"] is not None:
                return None
            task = task_pb2.Task.FromString(bytes(row["task"]))
            try:
                lbl.check_label(task, label_index)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            at = now_us()
            if row["state"] != s.ACTIVE or row["deadline_us"] <= at:
                return None
            request = review_pb2.ReviewRequest.FromString(bytes(row["request"]))
            item = lbl.request_item(request)
            review_id = new_id("rev_")
            final = lbl.build_final_label(
                request=request,
                task=task,
                review_id=review_id,
                reviewer_id=reviewer_id,
                human_label=label_index,
                leased_at_us=row["leased_at_us"],
                submitted_at_us=at,
            )
            await cur.execute(
                PG_SUBMIT_WRITE,
                {
                    "at": at,
                    "lease_id": lease_id,
                    "reviewer": reviewer_id,
                    "review_id": review_id,
                    "key": key,
                    "item_id": item.item_id,
                    "label": label_index,
                    "value": final.SerializeToString(),
                    "detail": f"review_id={review_id} label_index={label_index}",
                },
            )
            result = await cur.fetchone()
        if result is None or result["reviews"] != 1:
            return None
        self.outbox_changed.set()
        return Submitted(review_id=review_id, submitted_at_us=at, duplicate=False)

    async def _existing_review(
        self, conn: AsyncConnection, lease_id: str, key: str, label_index: int
    ) -> Submitted | None:
        rows = (
            await conn.execute(
                select(
                    s.reviews.c.review_id,
                    s.reviews.c.lease_id,
                    s.reviews.c.label_index,
                    s.reviews.c.submitted_at_us,
                    s.reviews.c.idempotency_key,
                ).where((s.reviews.c.lease_id == lease_id) | (s.reviews.c.idempotency_key == key))
            )
        ).all()
        if not rows:
            return None
        for row in rows:
            if row.lease_id != lease_id:
                raise AlreadyExists("idempotency key already used for another lease")
        row = rows[0]
        if row.label_index != label_index:
            raise AlreadyExists(f"lease {lease_id} was already submitted with another label")
        return Submitted(
            review_id=row.review_id, submitted_at_us=row.submitted_at_us, duplicate=True
        )

    async def _submit(
        self, reviewer_id: str, lease_id: str, label_index: int, key: str
    ) -> Submitted:
        async with self._tx() as conn:
            lease = await self._lock_lease(conn, lease_id)
            if lease.reviewer_id != reviewer_id:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            previous = await self._existing_review(conn, lease_id, key, label_index)
            if previous is not None:
                return previous
            entry = (
                await conn.execute(
                    select(s.queue.c.request, s.queue.c.state, s.tasks.c.task)
                    .join(s.tasks, s.tasks.c.task_id == s.queue.c.task_id)
                    .where(s.queue.c.id == lease.queue_id)
                )
            ).first()
            if entry is None:
                raise FailedPrecondition(f"task of lease {lease_id} is unknown")
            task = task_pb2.Task.FromString(entry.task)
            try:
                lbl.check_label(task, label_index)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            at = now_us()
            self._require_live(lease, at)
            request = review_pb2.ReviewRequest.FromString(entry.request)
            item = lbl.request_item(request)
            review_id = new_id("rev_")
            final = lbl.build_final_label(
                request=request,
                task=task,
                review_id=review_id,
                reviewer_id=reviewer_id,
                human_label=label_index,
                leased_at_us=lease.leased_at_us,
                submitted_at_us=at,
            )
            await conn.execute(
                insert(s.reviews).values(
                    review_id=review_id,
                    request_id=lease.request_id,
                    lease_id=lease_id,
                    idempotency_key=key,
                    task_id=lease.task_id,
                    item_id=item.item_id,
                    reviewer_id=reviewer_id,
                    label_index=label_index,
                    leased_at_us=lease.leased_at_us,
                    submitted_at_us=at,
                )
            )
            await conn.execute(
                update(s.leases)
                .where(s.leases.c.lease_id == lease_id)
                .values(state=s.SUBMITTED, ended_at_us=at)
            )
            await conn.execute(
                update(s.queue)
                .where(s.queue.c.id == lease.queue_id)
                .values(state=s.DONE, lease_deadline_us=None, updated_at_us=at)
            )
            await conn.execute(
                insert(s.outbox).values(
                    topic="labels",
                    key=item.item_id,
                    value=final.SerializeToString(),
                    created_at_us=at,
                )
            )
            await self._audit(
                conn,
                [
                    self._audit_row(
                        at,
                        reviewer_id,
                        "submitted",
                        lease.request_id,
                        lease_id,
                        f"review_id={review_id} label_index={label_index}",
                    )
                ],
            )
        self.outbox_changed.set()
        return Submitted(review_id=review_id, submitted_at_us=at, duplicate=False)

    # ------------------------------------------------- extend/release/skip

    async def extend(self, reviewer_id: str, lease_id: str, lease_seconds: float) -> int:
        """Move an active lease's deadline to now + ``lease_seconds``; returns it."""
        async with self._tx() as conn:
            lease = await self._lock_lease(conn, lease_id)
            if lease.reviewer_id != reviewer_id:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            at = now_us()
            self._require_live(lease, at)
            deadline = at + int(lease_seconds * 1_000_000)
            await conn.execute(
                update(s.leases).where(s.leases.c.lease_id == lease_id).values(deadline_us=deadline)
            )
            await conn.execute(
                update(s.queue)
                .where(s.queue.c.id == lease.queue_id, s.queue.c.lease_id == lease_id)
                .values(lease_deadline_us=deadline, updated_at_us=at)
            )
            await self._audit(
                conn,
                [
                    self._audit_row(
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
        async with self._tx() as conn:
            lease = await self._lock_lease(conn, lease_id)
            if lease.reviewer_id != actor.id and not actor.is_admin:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            if lease.state in (s.RELEASED, s.EXPIRED, s.REVOKED):
                return
            if lease.state != s.ACTIVE:
                raise FailedPrecondition(f"lease {lease_id} is {lease.state}")
            at = now_us()
            await self._return_to_queue(conn, [lease], s.RELEASED, at)
            await self._audit(
                conn, [self._audit_row(at, actor.id, "released", lease.request_id, lease_id)]
            )
        self._notify()

    async def skip(self, reviewer_id: str, lease_id: str, reason_code: int, reason: str) -> None:
        """The reviewer declines the item: it goes back to the queue for others."""
        async with self._tx() as conn:
            lease = await self._lock_lease(conn, lease_id)
            if lease.reviewer_id != reviewer_id:
                raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
            at = now_us()
            self._require_live(lease, at)
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
            await self._return_to_queue(conn, [lease], s.SKIPPED, at)
            await self._audit(
                conn,
                [
                    self._audit_row(
                        at,
                        reviewer_id,
                        "skipped",
                        lease.request_id,
                        lease_id,
                        f"reason_code={reason_code}",
                    )
                ],
            )
        self._notify()

    async def expire_leases(self, limit: int = 500) -> int:
        """Reaper: end active leases past their deadline and re-queue their entries."""
        at = now_us()
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(s.leases)
                    .where(s.leases.c.state == s.ACTIVE, s.leases.c.deadline_us <= at)
                    .order_by(s.leases.c.deadline_us)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            expired = [_lease_row(r) for r in rows]
            await self._return_to_queue(conn, expired, s.EXPIRED, at)
            await self._audit(
                conn,
                [self._audit_row(at, SYSTEM, "expired", e.request_id, e.lease_id) for e in expired],
            )
        if expired:
            self._notify()
        return len(expired)

    # ----------------------------------------------------------- reviewers

    async def create_reviewer(
        self, name: str, role: str, token_sha256: str, actor: str
    ) -> Reviewer:
        """Create a reviewer account holding the hash of its token."""
        at = now_us()
        reviewer = Reviewer(
            id=new_id("usr_"), name=name, role=role, disabled=False, created_at_us=at
        )
        async with self._tx() as conn:
            await conn.execute(
                insert(s.reviewers).values(
                    id=reviewer.id,
                    name=name,
                    role=role,
                    token_sha256=token_sha256,
                    disabled=False,
                    created_at_us=at,
                )
            )
            await self._audit(
                conn,
                [
                    self._audit_row(
                        at,
                        actor,
                        "reviewer_created",
                        detail=f"reviewer_id={reviewer.id} role={role}",
                    )
                ],
            )
        return reviewer

    async def reviewer_by_token(self, token_sha256: str) -> Reviewer | None:
        """The reviewer whose token hashes to ``token_sha256``."""
        async with self._reader.connect() as conn:
            row = (
                await conn.execute(
                    select(s.reviewers).where(s.reviewers.c.token_sha256 == token_sha256)
                )
            ).first()
        return None if row is None else _reviewer(row)

    async def get_reviewer(self, reviewer_id: str) -> Reviewer | None:
        """A reviewer by id."""
        async with self._reader.connect() as conn:
            row = (
                await conn.execute(select(s.reviewers).where(s.reviewers.c.id == reviewer_id))
            ).first()
        return None if row is None else _reviewer(row)

    async def disable_reviewer(self, reviewer_id: str, actor: str, reason: str) -> int:
        """Disable a reviewer and revoke its active leases; returns how many."""
        at = now_us()
        async with self._tx() as conn:
            found = (
                await conn.execute(
                    update(s.reviewers)
                    .where(s.reviewers.c.id == reviewer_id)
                    .values(disabled=True, disabled_at_us=at)
                    .returning(s.reviewers.c.id)
                )
            ).scalar_one_or_none()
            if found is None:
                raise NotFound(f"reviewer {reviewer_id} not found")
            rows = (
                await conn.execute(
                    select(s.leases)
                    .where(s.leases.c.reviewer_id == reviewer_id, s.leases.c.state == s.ACTIVE)
                    .with_for_update()
                )
            ).all()
            revoked = [_lease_row(r) for r in rows]
            await self._return_to_queue(conn, revoked, s.REVOKED, at)
            audit = [
                self._audit_row(
                    at,
                    actor,
                    "reviewer_disabled",
                    detail=f"reviewer_id={reviewer_id} reason_chars={len(reason)}",
                )
            ]
            audit += [
                self._audit_row(at, actor, "revoked", r.request_id, r.lease_id) for r in revoked
            ]
            await self._audit(conn, audit)
        self._notify()
        return len(revoked)

    # ---------------------------------------------------------- statistics

    async def task_stats(self, task_id: str) -> TaskStatsRow:
        """Counts of one task's queue; NotFound for a task the gateway never saw."""
        q = s.queue
        async with self._reader.connect() as conn:
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
        )

    async def reviewer_stats(self, reviewer_id: str) -> ReviewerStatsRow:
        """Statistics of one reviewer; NotFound for an unknown id."""
        reviewer = await self.get_reviewer(reviewer_id)
        if reviewer is None:
            raise NotFound(f"reviewer {reviewer_id} not found")
        at = now_us()
        r, lz = s.reviews, s.leases
        async with self._reader.connect() as conn:
            completed, last = (
                await conn.execute(
                    select(func.count(), func.max(r.c.submitted_at_us)).where(
                        r.c.reviewer_id == reviewer_id
                    )
                )
            ).one()
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
                        .limit(1001)
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
        )

    # -------------------------------------------------------------- outbox

    async def outbox_claim(self, batch: int, limit: int) -> list[OutboxRow]:
        """Tag up to ``limit`` unsent rows (oldest first) with ``batch``; return them."""
        o = s.outbox
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(o.c.id, o.c.topic, o.c.key, o.c.value)
                    .where(o.c.sent_at_us.is_(None))
                    .order_by(o.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await conn.execute(
                    update(o).where(o.c.id.in_([r.id for r in rows])).values(batch=batch)
                )
        return [OutboxRow(id=r.id, topic=r.topic, key=r.key, value=r.value) for r in rows]

    async def outbox_mark_sent(self, ids: Sequence[int], batch: int) -> int:
        """Record that rows ``ids`` were committed to Kafka in transaction ``batch``."""
        if not ids:
            return 0
        at = now_us()
        o = s.outbox
        async with self._tx() as conn:
            result = await conn.execute(
                update(o)
                .where(o.c.id.in_(list(ids)), o.c.sent_at_us.is_(None))
                .values(sent_at_us=at, batch=batch)
            )
            await self._audit(
                conn,
                [self._audit_row(at, SYSTEM, "published", detail=f"batch={batch} rows={len(ids)}")],
            )
        return int(result.rowcount)

    async def outbox_mark_batch_sent(self, batch: int) -> int:
        """Recovery: mark every unsent row tagged ``batch`` as sent; returns how many."""
        at = now_us()
        o = s.outbox
        async with self._tx() as conn:
            result = await conn.execute(
                update(o).where(o.c.batch == batch, o.c.sent_at_us.is_(None)).values(sent_at_us=at)
            )
            count = int(result.rowcount)
            if count:
                await self._audit(
                    conn,
                    [
                        self._audit_row(
                            at,
                            SYSTEM,
                            "published",
                            detail=f"batch={batch} rows={count} recovered=1",
                        )
                    ],
                )
        return count

    async def outbox_unsent(self) -> int:
        """Rows not yet published (a gauge and a test hook)."""
        async with self._reader.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(s.outbox)
                        .where(s.outbox.c.sent_at_us.is_(None))
                    )
                ).scalar_one()
            )


def _lease_row(row: Any) -> _LeaseRow:
    return _LeaseRow(
        lease_id=row.lease_id,
        queue_id=row.queue_id,
        request_id=row.request_id,
        task_id=row.task_id,
        reviewer_id=row.reviewer_id,
        leased_at_us=row.leased_at_us,
        deadline_us=row.deadline_us,
        state=row.state,
    )


def _reviewer(row: Any) -> Reviewer:
    return Reviewer(
        id=row.id,
        name=row.name,
        role=row.role,
        disabled=bool(row.disabled),
        created_at_us=row.created_at_us,
    )
