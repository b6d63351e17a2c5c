"""The gateway's operations: the one service layer under both edges.

The gRPC ``ReviewService`` (:mod:`.api`) and the reviewer web workspace
(:mod:`.web`) are thin edges over :class:`ReviewOps`: they authenticate the
caller their own way (bearer metadata, a session cookie), call one method
here and translate the result or the :class:`~.errors.GatewayError` into
their protocol. Every rule (argument limits, who may do what, lease
durations, the long poll) is written here once, so the two edges cannot
drift apart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from act.v1 import api_pb2, review_pb2, task_pb2

from services.core.calibration import ReviewCalibration, review_calibration
from services.review_gateway import metrics
from services.review_gateway.auth import (
    BOOTSTRAP_ADMIN_ID,
    Authenticator,
    new_token,
    require_admin,
    token_sha256,
)
from services.review_gateway.errors import InvalidArgument, PermissionDenied
from services.review_gateway.labels import request_item
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import (
    ROLE_ADMIN,
    ROLE_PRODUCER,
    ROLE_REVIEWER,
    Adjudicated,
    DisputeRow,
    Leased,
    Reviewer,
    ReviewerStatsRow,
    ReviewStore,
    Submitted,
    TaskStatsRow,
)

log = structlog.get_logger(__name__)

MAX_ID_CHARS = 200
MAX_REASON_CHARS = 2000
#: Roles an admin can give an account; producer accounts ingest (services.ingest)
#: and are refused by the gateway's own edges.
ROLES = (ROLE_REVIEWER, ROLE_ADMIN, ROLE_PRODUCER)
SKIP_REASONS = frozenset(api_pb2.SkipReason.values())
# Between two looks at the queue during a long poll, in case a change signal
# from another replica (which this process cannot see) made an item leasable.
_POLL_S = 0.25


def check_id(name: str, value: str, *, required: bool = True) -> None:
    """InvalidArgument for a missing (when ``required``) or over-long identifier."""
    if required and not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{name} longer than {MAX_ID_CHARS} characters")


def check_reason(reason: str) -> None:
    """InvalidArgument for an over-long free-text reason."""
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidArgument(f"reason longer than {MAX_REASON_CHARS} characters")


@dataclass(frozen=True, slots=True)
class LeaseView:
    """A lease as a reviewer may see it: the request (reference label removed
    unless the deployment exposes it) and the task it belongs to."""

    leased: Leased
    request: review_pb2.ReviewRequest
    task: task_pb2.Task

    @property
    def lease_id(self) -> str:
        """The lease's id."""
        return self.leased.lease_id

    @property
    def deadline_us(self) -> int:
        """When the lease expires (microseconds since the epoch)."""
        return self.leased.deadline_us


class ReviewOps:
    """Leases, submissions, skips, statistics and reviewer management, for any edge."""

    def __init__(self, store: ReviewStore, settings: GatewaySettings) -> None:
        self.store = store
        self.settings = settings
        self.auth = Authenticator(store, settings.admin_token, settings.token_cache_s)

    # ---------------------------------------------------------------- leases

    def lease_seconds(self, requested: int) -> int:
        """The lease duration granted for ``requested`` seconds (0 = the default)."""
        if requested < 0:
            raise InvalidArgument("lease_seconds must be >= 0")
        if requested == 0:
            return self.settings.lease_seconds
        return min(requested, self.settings.max_lease_seconds)

    async def lease(
        self,
        caller: Reviewer,
        task_id: str,
        *,
        lease_seconds: int = 0,
        wait_seconds: float = 0.0,
        budget_s: float | None = None,
    ) -> LeaseView | None:
        """Lease the next item the caller may review, waiting up to ``wait_seconds``.

        ``budget_s`` is what is left of the caller's deadline: the poll answers
        (None) a little before it runs out rather than failing with it.
        """
        check_id("task_id", task_id, required=False)
        seconds = self.lease_seconds(lease_seconds)
        if wait_seconds < 0:
            raise InvalidArgument("wait_seconds must be >= 0")
        budget = self.settings.call_timeout_s if budget_s is None else budget_s
        loop = asyncio.get_running_loop()
        wait = min(float(wait_seconds), self.settings.max_wait_seconds, budget * 0.8)
        until = loop.time() + wait
        while True:
            self.store.queue_changed.clear()
            leased = await self.store.lease(caller.id, task_id, seconds)
            if leased is not None:
                return self.view(leased)
            left = until - loop.time()
            if left <= 0:
                return None
            try:
                async with asyncio.timeout(min(left, _POLL_S)):
                    await self.store.queue_changed.wait()
            except TimeoutError:
                pass

    def view(self, leased: Leased) -> LeaseView:
        """What a reviewer is shown of a lease (never the reference label in production)."""
        request = review_pb2.ReviewRequest.FromString(leased.request)
        if not self.settings.expose_reference_labels:
            request_item(request).ClearField("reference_label")
        return LeaseView(leased, request, task_pb2.Task.FromString(leased.task))

    async def submit(
        self,
        caller: Reviewer,
        lease_id: str,
        label_index: int,
        idempotency_key: str,
        *,
        hold_s: float = 0.0,
    ) -> Submitted:
        """Accept the human label of the caller's lease (idempotent per key).

        ``hold_s`` keeps the FinalLabel back that long, so that the reviewer
        can undo the decision before it leaves the gateway.
        """
        check_id("lease_id", lease_id)
        check_id("idempotency_key", idempotency_key, required=False)
        if label_index < 0:
            raise InvalidArgument("label_index must be >= 0")
        result = await self.store.submit(
            caller.id, lease_id, label_index, idempotency_key, hold_s=hold_s
        )
        if not result.duplicate:
            metrics.SUBMITTED.inc()
        return result

    async def extend(self, caller: Reviewer, lease_id: str, lease_seconds: int = 0) -> int:
        """Push the caller's active lease out; returns the new deadline (microseconds)."""
        check_id("lease_id", lease_id)
        return await self.store.extend(caller.id, lease_id, self.lease_seconds(lease_seconds))

    async def release(self, caller: Reviewer, lease_id: str) -> None:
        """Give a lease back to the queue (an admin may release anyone's)."""
        check_id("lease_id", lease_id)
        await self.store.release(caller, lease_id)

    async def skip(self, caller: Reviewer, lease_id: str, reason_code: int, reason: str) -> None:
        """Decline the caller's leased item; it returns to the queue for other reviewers."""
        check_id("lease_id", lease_id)
        check_reason(reason)
        if reason_code not in SKIP_REASONS:
            raise InvalidArgument("unknown reason_code")
        await self.store.skip(caller.id, lease_id, reason_code, reason)

    # -------------------------------------------------------- adjudication

    async def disputes(self, caller: Reviewer, task_id: str = "") -> list[DisputeRow]:
        """Admins: items whose two reviews disagree, waiting for a decision."""
        require_admin(caller)
        check_id("task_id", task_id, required=False)
        return await self.store.disputes(task_id)

    async def adjudicate(self, caller: Reviewer, request_id: str, label_index: int) -> Adjudicated:
        """Admins: decide a disputed item's label; its one FinalLabel goes out."""
        require_admin(caller)
        check_id("request_id", request_id)
        result = await self.store.adjudicate(caller, request_id, label_index)
        log.info(
            "adjudicated",
            request_id=request_id,
            adjudication_id=result.adjudication_id,
            duplicate=result.duplicate,
            actor=caller.id,
        )
        return result

    # ------------------------------------------------------------ statistics

    async def task_stats(self, caller: Reviewer, task_id: str) -> TaskStatsRow:
        """Queue statistics of one task (admins)."""
        require_admin(caller)
        check_id("task_id", task_id)
        return await self.store.task_stats(task_id)

    async def task_calibration(self, caller: Reviewer, task_id: str) -> ReviewCalibration | None:
        """The critic's calibration on a task's reviews (admins); None before any review."""
        require_admin(caller)
        check_id("task_id", task_id)
        reviewed = await self.store.reviewed_items(task_id)
        return review_calibration(
            [r.eps for r in reviewed],
            [r.human_label != r.machine_label for r in reviewed],
            [r.pi for r in reviewed],
        )

    async def reviewer_stats(self, caller: Reviewer, reviewer_id: str) -> ReviewerStatsRow:
        """Statistics of the caller, or of anyone for an admin."""
        check_id("reviewer_id", reviewer_id, required=False)
        target = reviewer_id or caller.id
        if target != caller.id and not caller.is_admin:
            raise PermissionDenied("only admins read other reviewers' statistics")
        if target == BOOTSTRAP_ADMIN_ID and caller.id == BOOTSTRAP_ADMIN_ID:
            # The bootstrap admin has no row: it reviews nothing.
            return ReviewerStatsRow(caller, 0, 0, 0, 0, 0.0, None, 0)
        return await self.store.reviewer_stats(target)

    # ------------------------------------------------------------- reviewers

    async def create_reviewer(self, caller: Reviewer, name: str, role: str) -> tuple[Reviewer, str]:
        """Admins: a new reviewer and its token (returned once, stored hashed)."""
        require_admin(caller)
        name = name.strip()
        if not name or len(name) > MAX_ID_CHARS:
            raise InvalidArgument(f"name must have 1 to {MAX_ID_CHARS} characters")
        if role not in ROLES:
            raise InvalidArgument("unknown role")
        token = new_token()
        reviewer = await self.store.create_reviewer(name, role, token_sha256(token), caller.id)
        log.info("reviewer_created", reviewer_id=reviewer.id, role=role, actor=caller.id)
        return reviewer, token

    async def disable_reviewer(self, caller: Reviewer, reviewer_id: str, reason: str) -> int:
        """Admins: disable a reviewer (token and sessions stop working, leases go back)."""
        require_admin(caller)
        check_id("reviewer_id", reviewer_id)
        check_reason(reason)
        revoked = await self.store.disable_reviewer(reviewer_id, caller.id, reason)
        self.auth.forget(reviewer_id)
        log.info("reviewer_disabled", reviewer_id=reviewer_id, revoked=revoked, actor=caller.id)
        return revoked

    async def set_reviewer_blur(
        self, caller: Reviewer, reviewer_id: str, blur_px: int | None
    ) -> Reviewer:
        """Admins: a reviewer's image blur in CSS pixels (None: the server default)."""
        require_admin(caller)
        check_id("reviewer_id", reviewer_id)
        reviewer = await self.store.set_blur(caller, reviewer_id, blur_px)
        self.auth.forget(reviewer_id)
        log.info("reviewer_blur_set", reviewer_id=reviewer_id, blur_px=blur_px, actor=caller.id)
        return reviewer
