"""``act.v1.TrainingService``: start, read, list and cancel fits over gRPC.

The servicer maps requests onto :class:`TrainingOps` (implemented by
:class:`~services.trainer.facade.TrainerFacade`) and operation errors onto
gRPC status codes; it holds no state of its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import grpc
from act.v1 import api_pb2, api_pb2_grpc, training_pb2

from services.runtime.grpc_server import Registration
from services.trainer.fitqueue import TERMINAL_STATES

SERVICE_NAME = "act.v1.TrainingService"


class TrainingOps(Protocol):
    """The trainer operations the gRPC API needs."""

    async def count_labels(self, task_id: str) -> int:
        """Distinct items of a task."""
        ...

    async def resolve_config(
        self, task_id: str, config: training_pb2.FitConfig
    ) -> training_pb2.FitConfig:
        """The config with defaults filled; KeyError (unknown model) or ValueError if invalid."""
        ...

    async def submit_fit(
        self, task_id: str, config: training_pb2.FitConfig, idempotency_key: str = ""
    ) -> training_pb2.FitStatus:
        """Queue a fit (idempotent by key)."""
        ...

    async def get_fit(self, fit_id: str) -> training_pb2.FitStatus | None:
        """A fit's status, None if unknown."""
        ...

    async def list_fits(
        self, task_id: str | None, offset: int, limit: int
    ) -> list[training_pb2.FitStatus]:
        """Fits in creation order."""
        ...

    async def cancel_fit(self, fit_id: str, reason: str) -> training_pb2.FitStatus | None:
        """Cancel a fit; None if unknown."""
        ...


class TrainingServicer(api_pb2_grpc.TrainingServiceServicer):  # type: ignore[misc]
    """``act.v1.TrainingService``: start, read, list and cancel fits."""

    MAX_PAGE = 500
    CANCEL_WAIT_S = 5.0

    def __init__(self, ops: TrainingOps) -> None:
        self.ops = ops

    async def StartFit(
        self, request: api_pb2.StartFitRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.FitStatus:
        """Queue a fit of the task's current labels (idempotent by ``idempotency_key``)."""
        if not request.task_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task_id is required")
        if await self.ops.count_labels(request.task_id) == 0:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"task {request.task_id!r} has no labels yet"
            )
        try:
            config = await self.ops.resolve_config(request.task_id, request.config)
        except (KeyError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return await self.ops.submit_fit(request.task_id, config, request.idempotency_key)

    async def GetFit(
        self, request: api_pb2.GetFitRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.FitStatus:
        """A fit's status with its latest metrics."""
        status = await self.ops.get_fit(request.fit_id)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no fit {request.fit_id!r}")
        return status

    async def ListFits(
        self, request: api_pb2.ListFitsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListFitsResponse:
        """Fits in creation order, paged (``page_token`` is an opaque offset)."""
        size = min(request.page_size or 50, self.MAX_PAGE)
        try:
            offset = int(request.page_token) if request.page_token else 0
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad page_token")
        fits = await self.ops.list_fits(request.task_id or None, offset, size + 1)
        token = str(offset + size) if len(fits) > size else ""
        return api_pb2.ListFitsResponse(fits=fits[:size], next_page_token=token)

    async def CancelFit(
        self, request: api_pb2.CancelFitRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.FitStatus:
        """Cancel a queued or running fit (a running one stops at its next batch)."""
        status = await self.ops.cancel_fit(request.fit_id, request.reason or "cancelled by request")
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no fit {request.fit_id!r}")
        # A running fit stops at its next batch: wait briefly so the reply says so.
        deadline = time.monotonic() + self.CANCEL_WAIT_S
        while status is not None and status.state not in TERMINAL_STATES:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
            status = await self.ops.get_fit(request.fit_id)
        return status


def registrations(ops: TrainingOps) -> list[Registration]:
    """The gRPC services the trainer process serves besides health."""
    servicer = TrainingServicer(ops)
    return [(api_pb2_grpc.add_TrainingServiceServicer_to_server, servicer, SERVICE_NAME)]
