""":class:`ReviewStore`, the one object the gateway's components use for its state."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from act.v1 import review_pb2, task_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.review_gateway.store.adjudication import Adjudication, DisputedItem
from services.review_gateway.store.admin import Admin
from services.review_gateway.store.base import StoreCore
from services.review_gateway.store.exposure import Exposure
from services.review_gateway.store.outbox import Outbox
from services.review_gateway.store.queue import Queue
from services.review_gateway.store.reviewers import Reviewers
from services.review_gateway.store.reviews import Reviews
from services.review_gateway.store.rows import (
    ActiveLeaseRow,
    Adjudicated,
    DisputeRow,
    ExposureReportRow,
    ExposureRow,
    Leased,
    OutboxRow,
    Reviewer,
    ReviewerStatsRow,
    ReviewPair,
    SessionRow,
    Submitted,
    TaskStatsRow,
)
from services.review_gateway.store.sessions import Sessions
from services.review_gateway.store.stats import Stats
from services.review_gateway.store.tasks import Tasks
from services.review_gateway.store.undo import Undo
from services.review_gateway.store.workspace import LeaseContext, ReviewedItem, Workspace


class ReviewStore:
    """Transactions over the gateway's tables (PostgreSQL or SQLite).

    Every public method is one database transaction. The work is done by one
    part per concern, all sharing one :class:`~.base.StoreCore` (engine, pools,
    change signals); this class only delegates, so callers keep one object.
    """

    def __init__(self, engine: AsyncEngine, *, schema: str = "", hot_pool_size: int = 20) -> None:
        self._core = core = StoreCore(engine, schema=schema, hot_pool_size=hot_pool_size)
        self._tasks = Tasks(core)
        self._queue = Queue(core, self._tasks)
        self._reviews = Reviews(core)
        self._reviewers = Reviewers(core)
        self._stats = Stats(core, self._reviewers)
        self._outbox = Outbox(core)
        self._sessions = Sessions(core)
        self._exposure = Exposure(core)
        self._undo = Undo(core)
        self._adjudication = Adjudication(core)
        self._admin = Admin(core)
        self._workspace = Workspace(core)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (the relay's advisory lock and tests use it)."""
        return self._core.engine

    @property
    def sqlite(self) -> bool:
        """True for the embedded SQLite back end."""
        return self._core.sqlite

    @property
    def queue_changed(self) -> asyncio.Event:
        """Set whenever an entry may have become leasable (long polls wait on it)."""
        return self._core.queue_changed

    @property
    def outbox_changed(self) -> asyncio.Event:
        """Set whenever an outbox row was added (wakes the relay early)."""
        return self._core.outbox_changed

    async def close(self) -> None:
        """Close the connection pools."""
        await self._core.close()

    # --------------------------------------------------------------- tasks

    async def upsert_task(self, task: task_pb2.Task, *, only_if_missing: bool = False) -> None:
        """Remember a task's label set (see :meth:`.tasks.Tasks.upsert_task`)."""
        await self._tasks.upsert_task(task, only_if_missing=only_if_missing)

    async def get_task(self, task_id: str) -> task_pb2.Task | None:
        """The stored task, or None."""
        return await self._tasks.get_task(task_id)

    # ------------------------------------------------------- queue, leases

    async def enqueue(self, request: review_pb2.ReviewRequest, raw: bytes | None = None) -> bool:
        """Queue a review request once; True when it was new (see :mod:`.queue`)."""
        return await self._queue.enqueue(request, raw)

    async def lease(self, reviewer_id: str, task_id: str, lease_seconds: float) -> Leased | None:
        """Lease the best pending entry (highest priority, then oldest) or None."""
        return await self._queue.lease(reviewer_id, task_id, lease_seconds)

    async def extend(self, reviewer_id: str, lease_id: str, lease_seconds: float) -> int:
        """Move an active lease's deadline to now + ``lease_seconds``; returns it."""
        return await self._queue.extend(reviewer_id, lease_id, lease_seconds)

    async def release(self, actor: Reviewer, lease_id: str) -> None:
        """Give a lease back; the entry is pending again at once."""
        await self._queue.release(actor, lease_id)

    async def skip(self, reviewer_id: str, lease_id: str, reason_code: int, reason: str) -> None:
        """The reviewer declines the item: it goes back to the queue for others."""
        await self._queue.skip(reviewer_id, lease_id, reason_code, reason)

    async def expire_leases(self, limit: int = 500) -> int:
        """Reaper: end active leases past their deadline and re-queue their entries."""
        return await self._queue.expire_leases(limit)

    # ------------------------------------------------------------- reviews

    async def submit(
        self,
        reviewer_id: str,
        lease_id: str,
        label_index: int,
        idempotency_key: str,
        hold_s: float = 0.0,
    ) -> Submitted:
        """Accept the human label of a lease, exactly once (see :mod:`.reviews`);
        ``hold_s`` keeps its FinalLabel back that long (the undo window)."""
        return await self._reviews.submit(
            reviewer_id, lease_id, label_index, idempotency_key, hold_s
        )

    async def undo(
        self, reviewer_id: str, review_id: str, lease_seconds: float, window_s: float = 0.0
    ) -> Leased:
        """Take back a held review and lease its item to the reviewer again (see :mod:`.undo`)."""
        return await self._undo.undo(reviewer_id, review_id, lease_seconds, window_s)

    # ------------------------------------------------ overlap, adjudication

    async def disputes(self, task_id: str = "", *, limit: int = 200) -> list[DisputeRow]:
        """Items whose two reviews disagree, waiting for an admin (see :mod:`.adjudication`)."""
        return await self._adjudication.disputes(task_id, limit=limit)

    async def disputed_item(self, request_id: str) -> DisputedItem | None:
        """A disputed item with its request and task, or None."""
        return await self._adjudication.disputed_item(request_id)

    async def adjudicate(self, actor: Reviewer, request_id: str, label_index: int) -> Adjudicated:
        """An admin decides a disputed item's label; its one FinalLabel goes out."""
        return await self._adjudication.adjudicate(actor, request_id, label_index)

    async def review_pairs(self, task_id: str) -> list[ReviewPair]:
        """The task's items with two reviews (the input of the agreement statistics)."""
        return await self._adjudication.review_pairs(task_id)

    # --------------------------------------------------------------- admin

    async def active_leases(self, task_id: str = "", *, limit: int = 1000) -> list[ActiveLeaseRow]:
        """Active leases (of one task, or all), oldest first, with reviewer names."""
        return await self._admin.active_leases(task_id, limit=limit)

    async def requeue(self, actor: Reviewer, request_id: str) -> bool:
        """An admin puts a leased entry back to pending (see :mod:`.admin`)."""
        return await self._admin.requeue(actor, request_id)

    # ----------------------------------------------------------- reviewers

    async def create_reviewer(
        self, name: str, role: str, token_sha256: str, actor: str
    ) -> Reviewer:
        """Create a reviewer account holding the hash of its token."""
        return await self._reviewers.create_reviewer(name, role, token_sha256, actor)

    async def reviewer_by_token(self, token_sha256: str) -> Reviewer | None:
        """The reviewer whose token hashes to ``token_sha256``."""
        return await self._reviewers.reviewer_by_token(token_sha256)

    async def get_reviewer(self, reviewer_id: str) -> Reviewer | None:
        """A reviewer by id."""
        return await self._reviewers.get_reviewer(reviewer_id)

    async def disable_reviewer(self, reviewer_id: str, actor: str, reason: str) -> int:
        """Disable a reviewer, revoke its active leases (returns how many) and its
        web sessions, in one transaction."""
        return await self._reviewers.disable_reviewer(reviewer_id, actor, reason)

    async def set_blur(self, actor: Reviewer, reviewer_id: str, blur_px: int | None) -> Reviewer:
        """An admin sets a reviewer's image blur (None: the server default); see
        :meth:`.reviewers.Reviewers.set_blur`."""
        return await self._reviewers.set_blur(actor, reviewer_id, blur_px)

    # ------------------------------------------------------------ sessions

    async def create_session(self, reviewer_id: str, ttl_s: float) -> tuple[str, str, int]:
        """Log in: ``(session_token, csrf_token, expires_at_us)`` (see :mod:`.sessions`)."""
        return await self._sessions.create_session(reviewer_id, ttl_s)

    async def session(self, session_token: str) -> SessionRow | None:
        """The live session of a cookie, or None (unknown, revoked, expired, reviewer disabled)."""
        return await self._sessions.session(session_token)

    async def revoke_session(self, session_token: str) -> bool:
        """Log out; True when a live session was revoked."""
        return await self._sessions.revoke_session(session_token)

    # ------------------------------------------------------------ exposure

    async def record_exposure(
        self,
        reviewer_id: str,
        task_id: str,
        label_index: int,
        seconds: float,
        daily_cap_s: float,
        at_us: int | None = None,
    ) -> ExposureRow:
        """Add seconds of exposure to a category today (UTC) (see :mod:`.exposure`)."""
        return await self._exposure.record_exposure(
            reviewer_id, task_id, label_index, seconds, daily_cap_s, at_us
        )

    async def exposure_today(self, reviewer_id: str, at_us: int | None = None) -> list[ExposureRow]:
        """The reviewer's exposure per task and category today (UTC)."""
        return await self._exposure.exposure_today(reviewer_id, at_us)

    async def exposure_report(self, day: str) -> list[ExposureReportRow]:
        """Every reviewer's exposure per task and category on ``day`` ('YYYY-MM-DD')."""
        return await self._exposure.exposure_report(day)

    # ---------------------------------------------------------- statistics

    async def task_stats(self, task_id: str) -> TaskStatsRow:
        """Counts of one task's queue; NotFound for a task the gateway never saw."""
        return await self._stats.task_stats(task_id)

    async def reviewer_stats(self, reviewer_id: str) -> ReviewerStatsRow:
        """Statistics of one reviewer; NotFound for an unknown id."""
        return await self._stats.reviewer_stats(reviewer_id)

    # ----------------------------------------------------------- workspace

    async def own_active_lease(self, reviewer_id: str) -> Leased | None:
        """The reviewer's oldest live lease (resumed after a reload or a lost answer)."""
        return await self._workspace.own_active_lease(reviewer_id)

    async def lease_context(self, lease_id: str) -> LeaseContext | None:
        """A lease, its request and its task; None for an unknown lease."""
        return await self._workspace.lease_context(lease_id)

    async def list_reviewers(self) -> list[Reviewer]:
        """Every reviewer account, newest first."""
        return await self._workspace.list_reviewers()

    async def list_task_ids(self) -> list[str]:
        """Ids of the tasks the gateway knows."""
        return await self._workspace.list_task_ids()

    async def reviewed_items(self, task_id: str, limit: int = 5000) -> list[ReviewedItem]:
        """The latest ``limit`` reviews of a task with the machine's label, eps and pi."""
        return await self._workspace.reviewed_items(task_id, limit)

    async def count_reviews(self, task_id: str) -> int:
        """Human reviews of a task so far."""
        return await self._workspace.count_reviews(task_id)

    async def audit(
        self, actor: str, action: str, request_id: str | None, lease_id: str | None, detail: str
    ) -> None:
        """One audit row (ids and flags only, never content)."""
        await self._workspace.audit(actor, action, request_id, lease_id, detail)

    # -------------------------------------------------------------- outbox

    async def outbox_claim(self, batch: int, limit: int) -> list[OutboxRow]:
        """Tag up to ``limit`` unsent rows (oldest first) with ``batch``; return them."""
        return await self._outbox.outbox_claim(batch, limit)

    async def outbox_mark_sent(self, ids: Sequence[int], batch: int) -> int:
        """Record that rows ``ids`` were committed to Kafka in transaction ``batch``."""
        return await self._outbox.outbox_mark_sent(ids, batch)

    async def outbox_mark_batch_sent(self, batch: int) -> int:
        """Recovery: mark every unsent row tagged ``batch`` as sent; returns how many."""
        return await self._outbox.outbox_mark_batch_sent(batch)

    async def outbox_next_available_us(self) -> int | None:
        """When the earliest held unsent row becomes claimable (None: none is held)."""
        return await self._outbox.outbox_next_available_us()

    async def outbox_unsent(self) -> int:
        """Rows not yet published (a gauge and a test hook)."""
        return await self._outbox.outbox_unsent()
