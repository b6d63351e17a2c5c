"""The gRPC ``act.v1.ReviewService`` of the review gateway.

Status codes (no error fields in responses):

* UNAUTHENTICATED: no ``authorization: Bearer`` metadata, an unknown token, or
  a disabled reviewer's token. Checked first, before any argument.
* PERMISSION_DENIED: another reviewer's lease; a reviewer calling an admin RPC
  (CreateReviewer, DisableReviewer, GetTaskStats, someone else's statistics).
* INVALID_ARGUMENT: malformed arguments, a label index outside the task's
  label set, or a call without a deadline (``require_deadline``, on by
  default: every ReviewService call must carry one; health checks need not).
* NOT_FOUND: unknown lease, reviewer or task.
* FAILED_PRECONDITION: the lease is no longer active (expired, released,
  skipped, revoked), even if the reaper has not yet re-queued the item.
* ALREADY_EXISTS: an idempotency key reused for another lease, or a second,
  different label for an already submitted lease.
* RESOURCE_EXHAUSTED: a request larger than ``max_request_bytes`` (enforced by
  the gRPC transport before the handler runs).
* DEADLINE_EXCEEDED: the call outlived its deadline or ``call_timeout_s``.

Nothing is written for a refused call: every check happens before, or inside,
the transaction that would write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg
import structlog
from act.v1 import api_pb2, api_pb2_grpc, review_pb2, task_pb2
from sqlalchemy import exc as sa_exc

from services.review_gateway import metrics
from services.review_gateway.auth import (
    BOOTSTRAP_ADMIN_ID,
    Authenticator,
    new_token,
    require_admin,
    token_sha256,
)
from services.review_gateway.errors import GatewayError, InvalidArgument, PermissionDenied
from services.review_gateway.labels import request_item
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import ROLE_ADMIN, ROLE_REVIEWER, Reviewer, ReviewStore

log = structlog.get_logger(__name__)

SERVICE_NAME = "act.v1.ReviewService"
MAX_ID_CHARS = 200
MAX_REASON_CHARS = 2000
_POLL_S = 0.25

T = TypeVar("T")

_ROLES = {
    api_pb2.REVIEWER_ROLE_UNSPECIFIED: ROLE_REVIEWER,
    api_pb2.REVIEWER_ROLE_REVIEWER: ROLE_REVIEWER,
    api_pb2.REVIEWER_ROLE_ADMIN: ROLE_ADMIN,
}
_ROLE_ENUM = {
    ROLE_REVIEWER: api_pb2.REVIEWER_ROLE_REVIEWER,
    ROLE_ADMIN: api_pb2.REVIEWER_ROLE_ADMIN,
}


def _is_unavailable(exc: BaseException) -> bool:
    """Connection-level database errors (the caller should retry)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.TimeoutError
        | psycopg.OperationalError
        | psycopg.InterfaceError
        | OSError,
    )


def _check_id(name: str, value: str, *, required: bool = True) -> None:
    if required and not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{name} longer than {MAX_ID_CHARS} characters")


class ReviewServicer(api_pb2_grpc.ReviewServiceServicer):  # type: ignore[misc]
    """Leases, submissions, skips, statistics and reviewer management."""

    def __init__(self, store: ReviewStore, settings: GatewaySettings) -> None:
        self.store = store
        self.settings = settings
        self.auth = Authenticator(store, settings.admin_token, settings.token_cache_s)

    # ------------------------------------------------------------ plumbing

    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        handler: Callable[[Reviewer, float], Awaitable[T]],
    ) -> T:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            remaining = context.time_remaining()
            if remaining is None:
                if self.settings.require_deadline:
                    raise InvalidArgument("calls to ReviewService must carry a deadline")
                remaining = self.settings.call_timeout_s
            budget = min(
                float(remaining), self.settings.call_timeout_s + self.settings.max_wait_seconds
            )
            caller = await self.auth.authenticate(context.invocation_metadata())
            async with asyncio.timeout(max(budget, 0.001)):
                return await handler(caller, budget)
        except GatewayError as exc:
            code = exc.code
            await context.abort(exc.code, str(exc))
            raise AssertionError("abort returned") from None
        except TimeoutError:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            await context.abort(code, "deadline exceeded")
            raise AssertionError("abort returned") from None
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            if _is_unavailable(exc):
                # The database is unreachable: a retry later may succeed.
                code = grpc.StatusCode.UNAVAILABLE
                log.warning("rpc_unavailable", method=method, error_type=type(exc).__name__)
                await context.abort(code, "database unavailable, retry")
            code = grpc.StatusCode.INTERNAL
            log.error("rpc_failed", method=method, error_type=type(exc).__name__)
            await context.abort(code, "internal error")
            raise AssertionError("abort returned") from None
        finally:
            metrics.RPCS.labels(method=method, code=code.name).inc()
            metrics.RPC_LATENCY.labels(method=method).observe(time.perf_counter() - started)

    def _lease_seconds(self, requested: int) -> int:
        if requested < 0:
            raise InvalidArgument("lease_seconds must be >= 0")
        if requested == 0:
            return self.settings.lease_seconds
        return min(requested, self.settings.max_lease_seconds)

    # -------------------------------------------------------------- review

    async def Lease(
        self, request: api_pb2.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.LeaseResponse:
        """Lease the next pending item (long-polls up to ``wait_seconds``)."""

        async def handle(caller: Reviewer, budget: float) -> api_pb2.LeaseResponse:
            _check_id("task_id", request.task_id, required=False)
            seconds = self._lease_seconds(request.lease_seconds)
            if request.wait_seconds < 0:
                raise InvalidArgument("wait_seconds must be >= 0")
            loop = asyncio.get_running_loop()
            # Answer (empty) a little before the client's deadline runs out.
            wait = min(float(request.wait_seconds), self.settings.max_wait_seconds, budget * 0.8)
            until = loop.time() + wait
            while True:
                self.store.queue_changed.clear()
                leased = await self.store.lease(caller.id, request.task_id, seconds)
                if leased is not None:
                    return self._lease_response(leased)
                left = until - loop.time()
                if left <= 0:
                    return api_pb2.LeaseResponse()
                try:
                    async with asyncio.timeout(min(left, _POLL_S)):
                        await self.store.queue_changed.wait()
                except TimeoutError:
                    pass

        return await self._call("Lease", context, handle)

    def _lease_response(self, leased: Any) -> api_pb2.LeaseResponse:
        response = api_pb2.LeaseResponse(lease_id=leased.lease_id)
        response.request.MergeFromString(leased.request)
        if not self.settings.expose_reference_labels:
            request_item(response.request).ClearField("reference_label")
        task = task_pb2.Task.FromString(leased.task)
        response.labels.extend(task.labels)
        response.instructions = task.instructions
        response.deadline.FromMicroseconds(leased.deadline_us)
        return response

    async def Submit(
        self, request: api_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.SubmitResponse:
        """Accept the human label of a lease (idempotent)."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.SubmitResponse:
            _check_id("lease_id", request.lease_id)
            _check_id("idempotency_key", request.idempotency_key, required=False)
            if request.label_index < 0:
                raise InvalidArgument("label_index must be >= 0")
            result = await self.store.submit(
                caller.id, request.lease_id, request.label_index, request.idempotency_key
            )
            if not result.duplicate:
                metrics.SUBMITTED.inc()
            response = api_pb2.SubmitResponse(
                review_id=result.review_id, duplicate=result.duplicate
            )
            response.submitted_at.FromMicroseconds(result.submitted_at_us)
            return response

        return await self._call("Submit", context, handle)

    async def ExtendLease(
        self, request: api_pb2.ExtendLeaseRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ExtendLeaseResponse:
        """Push an active lease's deadline out."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.ExtendLeaseResponse:
            _check_id("lease_id", request.lease_id)
            seconds = self._lease_seconds(request.lease_seconds)
            deadline = await self.store.extend(caller.id, request.lease_id, seconds)
            response = api_pb2.ExtendLeaseResponse()
            response.deadline.FromMicroseconds(deadline)
            return response

        return await self._call("ExtendLease", context, handle)

    async def ReleaseLease(
        self, request: api_pb2.ReleaseLeaseRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ReleaseLeaseResponse:
        """Give a leased item back to the queue."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.ReleaseLeaseResponse:
            _check_id("lease_id", request.lease_id)
            await self.store.release(caller, request.lease_id)
            return api_pb2.ReleaseLeaseResponse()

        return await self._call("ReleaseLease", context, handle)

    async def Skip(
        self, request: api_pb2.SkipRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.SkipResponse:
        """Decline a leased item; it returns to the queue for other reviewers."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.SkipResponse:
            _check_id("lease_id", request.lease_id)
            if len(request.reason) > MAX_REASON_CHARS:
                raise InvalidArgument(f"reason longer than {MAX_REASON_CHARS} characters")
            if request.reason_code not in api_pb2.SkipReason.values():
                raise InvalidArgument("unknown reason_code")
            await self.store.skip(caller.id, request.lease_id, request.reason_code, request.reason)
            return api_pb2.SkipResponse()

        return await self._call("Skip", context, handle)

    # ---------------------------------------------------------- statistics

    async def GetTaskStats(
        self, request: api_pb2.GetTaskStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.TaskStats:
        """Queue statistics of one task (admins)."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.TaskStats:
            require_admin(caller)
            _check_id("task_id", request.task_id)
            row = await self.store.task_stats(request.task_id)
            stats = api_pb2.TaskStats(
                task_id=row.task_id,
                pending=row.pending,
                leased=row.leased,
                completed=row.completed,
                skipped=row.skipped,
                expired=row.expired,
            )
            for label, count in row.label_counts.items():
                stats.label_counts[label] = count
            return stats

        return await self._call("GetTaskStats", context, handle)

    async def GetReviewerStats(
        self, request: api_pb2.GetReviewerStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ReviewerStats:
        """Statistics of the caller, or of anyone for an admin."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.ReviewerStats:
            _check_id("reviewer_id", request.reviewer_id, required=False)
            target = request.reviewer_id or caller.id
            if target != caller.id and not caller.is_admin:
                raise PermissionDenied("only admins read other reviewers' statistics")
            if target == BOOTSTRAP_ADMIN_ID and caller.id == BOOTSTRAP_ADMIN_ID:
                return api_pb2.ReviewerStats(
                    reviewer_id=caller.id, name=caller.name, role=api_pb2.REVIEWER_ROLE_ADMIN
                )
            row = await self.store.reviewer_stats(target)
            stats = api_pb2.ReviewerStats(
                reviewer_id=row.reviewer.id,
                name=row.reviewer.name,
                role=_ROLE_ENUM.get(row.reviewer.role, api_pb2.REVIEWER_ROLE_UNSPECIFIED),
                disabled=row.reviewer.disabled,
                completed=row.completed,
                skipped=row.skipped,
                active_leases=row.active_leases,
                expired_leases=row.expired_leases,
                median_seconds_per_review=row.median_seconds_per_review,
            )
            stats.created_at.FromMicroseconds(row.reviewer.created_at_us)
            if row.last_submitted_at_us is not None:
                stats.last_submitted_at.FromMicroseconds(row.last_submitted_at_us)
            return stats

        return await self._call("GetReviewerStats", context, handle)

    # ----------------------------------------------------------- reviewers

    async def CreateReviewer(
        self, request: api_pb2.CreateReviewerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.CreateReviewerResponse:
        """Admins: create a reviewer; its token is returned once and stored hashed."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.CreateReviewerResponse:
            require_admin(caller)
            name = request.name.strip()
            if not name or len(name) > MAX_ID_CHARS:
                raise InvalidArgument(f"name must have 1 to {MAX_ID_CHARS} characters")
            role = _ROLES.get(request.role)
            if role is None:
                raise InvalidArgument("unknown role")
            token = new_token()
            reviewer = await self.store.create_reviewer(name, role, token_sha256(token), caller.id)
            log.info("reviewer_created", reviewer_id=reviewer.id, role=role, actor=caller.id)
            return api_pb2.CreateReviewerResponse(reviewer_id=reviewer.id, token=token)

        return await self._call("CreateReviewer", context, handle)

    async def DisableReviewer(
        self, request: api_pb2.DisableReviewerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.DisableReviewerResponse:
        """Admins: disable a reviewer; its token stops working, its leases go back."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.DisableReviewerResponse:
            require_admin(caller)
            _check_id("reviewer_id", request.reviewer_id)
            if len(request.reason) > MAX_REASON_CHARS:
                raise InvalidArgument(f"reason longer than {MAX_REASON_CHARS} characters")
            revoked = await self.store.disable_reviewer(
                request.reviewer_id, caller.id, request.reason
            )
            self.auth.forget(request.reviewer_id)
            log.info(
                "reviewer_disabled",
                reviewer_id=request.reviewer_id,
                revoked=revoked,
                actor=caller.id,
            )
            return api_pb2.DisableReviewerResponse()

        return await self._call("DisableReviewer", context, handle)


def registration(
    servicer: ReviewServicer,
) -> tuple[Callable[[Any, grpc.aio.Server], None], Any, str]:
    """The (add function, servicer, name) triple the runtime's GrpcServer takes."""
    return (api_pb2_grpc.add_ReviewServiceServicer_to_server, servicer, SERVICE_NAME)


__all__ = ["SERVICE_NAME", "ReviewServicer", "registration", "review_pb2"]
