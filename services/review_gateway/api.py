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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from act.v1 import api_pb2, api_pb2_grpc, review_pb2

from services.core.calibration import ReviewCalibration
from services.review_gateway import metrics
from services.review_gateway.errors import InvalidArgument, answer_rpc
from services.review_gateway.ops import LeaseView, ReviewOps
from services.review_gateway.store import ROLE_ADMIN, ROLE_PRODUCER, ROLE_REVIEWER, Reviewer

log = structlog.get_logger(__name__)

SERVICE_NAME = "act.v1.ReviewService"

T = TypeVar("T")

_ROLES = {
    api_pb2.REVIEWER_ROLE_UNSPECIFIED: ROLE_REVIEWER,
    api_pb2.REVIEWER_ROLE_REVIEWER: ROLE_REVIEWER,
    api_pb2.REVIEWER_ROLE_ADMIN: ROLE_ADMIN,
    api_pb2.REVIEWER_ROLE_PRODUCER: ROLE_PRODUCER,
}
_ROLE_ENUM = {
    ROLE_REVIEWER: api_pb2.REVIEWER_ROLE_REVIEWER,
    ROLE_ADMIN: api_pb2.REVIEWER_ROLE_ADMIN,
    ROLE_PRODUCER: api_pb2.REVIEWER_ROLE_PRODUCER,
}


class ReviewServicer(api_pb2_grpc.ReviewServiceServicer):  # type: ignore[misc]
    """The gRPC edge: each RPC authenticates, calls :class:`~.ops.ReviewOps`, answers."""

    def __init__(self, ops: ReviewOps) -> None:
        self.ops = ops
        self.settings = ops.settings

    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        handler: Callable[[Reviewer, float], Awaitable[T]],
    ) -> T:
        async def call() -> T:
            remaining = context.time_remaining()
            if remaining is None:
                if self.settings.require_deadline:
                    raise InvalidArgument("calls to ReviewService must carry a deadline")
                remaining = self.settings.call_timeout_s
            budget = min(
                float(remaining), self.settings.call_timeout_s + self.settings.max_wait_seconds
            )
            caller = await self.ops.auth.authenticate(context.invocation_metadata())
            async with asyncio.timeout(max(budget, 0.001)):
                return await handler(caller, budget)

        return await answer_rpc(
            method, context, call, calls=metrics.RPCS, latency=metrics.RPC_LATENCY
        )

    # -------------------------------------------------------------- review

    async def Lease(
        self, request: api_pb2.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.LeaseResponse:
        """Lease the next pending item (long-polls up to ``wait_seconds``)."""

        async def handle(caller: Reviewer, budget: float) -> api_pb2.LeaseResponse:
            view = await self.ops.lease(
                caller,
                request.task_id,
                lease_seconds=request.lease_seconds,
                wait_seconds=request.wait_seconds,
                budget_s=budget,
            )
            return api_pb2.LeaseResponse() if view is None else _lease_response(view)

        return await self._call("Lease", context, handle)

    async def Submit(
        self, request: api_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.SubmitResponse:
        """Accept the human label of a lease (idempotent)."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.SubmitResponse:
            r = await self.ops.submit(
                caller, request.lease_id, request.label_index, request.idempotency_key
            )
            response = api_pb2.SubmitResponse(review_id=r.review_id, duplicate=r.duplicate)
            response.submitted_at.FromMicroseconds(r.submitted_at_us)
            return response

        return await self._call("Submit", context, handle)

    async def ExtendLease(
        self, request: api_pb2.ExtendLeaseRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ExtendLeaseResponse:
        """Push an active lease's deadline out."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.ExtendLeaseResponse:
            deadline = await self.ops.extend(caller, request.lease_id, request.lease_seconds)
            response = api_pb2.ExtendLeaseResponse()
            response.deadline.FromMicroseconds(deadline)
            return response

        return await self._call("ExtendLease", context, handle)

    async def ReleaseLease(
        self, request: api_pb2.ReleaseLeaseRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ReleaseLeaseResponse:
        """Give a leased item back to the queue."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.ReleaseLeaseResponse:
            await self.ops.release(caller, request.lease_id)
            return api_pb2.ReleaseLeaseResponse()

        return await self._call("ReleaseLease", context, handle)

    async def Skip(
        self, request: api_pb2.SkipRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.SkipResponse:
        """Decline a leased item; it returns to the queue for other reviewers."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.SkipResponse:
            await self.ops.skip(caller, request.lease_id, request.reason_code, request.reason)
            return api_pb2.SkipResponse()

        return await self._call("Skip", context, handle)

    # ---------------------------------------------------------- statistics

    async def GetTaskStats(
        self, request: api_pb2.GetTaskStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.TaskStats:
        """Queue statistics of one task (admins)."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.TaskStats:
            row = await self.ops.task_stats(caller, request.task_id)
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
            calibration = await self.ops.task_calibration(caller, request.task_id)
            if calibration is not None:
                stats.calibration.CopyFrom(calibration_message(calibration))
            return stats

        return await self._call("GetTaskStats", context, handle)

    async def GetReviewerStats(
        self, request: api_pb2.GetReviewerStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ReviewerStats:
        """Statistics of the caller, or of anyone for an admin."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.ReviewerStats:
            row = await self.ops.reviewer_stats(caller, request.reviewer_id)
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
            if row.reviewer.created_at_us:
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
            role = _ROLES.get(request.role, "")
            reviewer, token = await self.ops.create_reviewer(caller, request.name, role)
            return api_pb2.CreateReviewerResponse(reviewer_id=reviewer.id, token=token)

        return await self._call("CreateReviewer", context, handle)

    async def DisableReviewer(
        self, request: api_pb2.DisableReviewerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.DisableReviewerResponse:
        """Admins: disable a reviewer; its token stops working, its leases go back."""

        async def handle(caller: Reviewer, _budget: float) -> api_pb2.DisableReviewerResponse:
            await self.ops.disable_reviewer(caller, request.reviewer_id, request.reason)
            return api_pb2.DisableReviewerResponse()

        return await self._call("DisableReviewer", context, handle)


def _lease_response(view: LeaseView) -> api_pb2.LeaseResponse:
    response = api_pb2.LeaseResponse(lease_id=view.lease_id, request=view.request)
    response.labels.extend(view.task.labels)
    response.instructions = view.task.instructions
    response.deadline.FromMicroseconds(view.deadline_us)
    return response


def registration(
    servicer: ReviewServicer,
) -> tuple[Callable[[Any, grpc.aio.Server], None], Any, str]:
    """The (add function, servicer, name) triple the runtime's GrpcServer takes."""
    return (api_pb2_grpc.add_ReviewServiceServicer_to_server, servicer, SERVICE_NAME)


__all__ = ["SERVICE_NAME", "ReviewServicer", "registration", "review_pb2"]


#: Where GetTaskStats reports the recalibrated eps.
CALIBRATION_AT = (0.1, 0.3, 0.5, 0.7, 0.9)


def calibration_message(cal: ReviewCalibration) -> api_pb2.CriticCalibration:
    """A task's :class:`ReviewCalibration` as its protobuf message."""
    message = api_pb2.CriticCalibration(
        reviews=cal.reviews,
        machine_error_rate=cal.machine_error_rate,
        eps_mean=cal.eps_mean,
        expected_calibration_error=cal.expected_calibration_error,
        method=cal.recalibration.method,
    )
    for eps, value in zip(CALIBRATION_AT, cal.recalibration(CALIBRATION_AT), strict=True):
        message.points.add(eps=eps, calibrated=float(value))
    return message
