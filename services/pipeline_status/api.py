"""``act.v1.PipelineStatusService`` over gRPC: a thin servicer over :class:`StatusOps`.

Any process can serve it with one call, :func:`add_to_server` (a plain
``grpc.aio.Server``) or :func:`registration` (the runtime's
:class:`~services.runtime.grpc_server.GrpcServer`, which adds health).
"""

from __future__ import annotations

from typing import Protocol

import grpc
from act.v1 import api_pb2, api_pb2_grpc
from aiokafka.errors import KafkaError

from services.runtime.grpc_server import Registration

SERVICE_NAME = "act.v1.PipelineStatusService"


class StatusSource(Protocol):
    """What the servicer needs (:class:`~services.pipeline_status.ops.StatusOps`)."""

    async def get_status(self, request: api_pb2.GetStatusRequest) -> api_pb2.PipelineStatus:
        """The pipeline's status now."""
        ...


class PipelineStatusServicer(api_pb2_grpc.PipelineStatusServiceServicer):  # type: ignore[misc]
    """``act.v1.PipelineStatusService``; holds no state of its own."""

    def __init__(self, ops: StatusSource) -> None:
        self.ops = ops

    async def GetStatus(
        self, request: api_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PipelineStatus:
        """Stage lag, dead letters by reason and per-task progress."""
        try:
            return await self.ops.get_status(request)
        except KafkaError as exc:  # the broker is down or slow: worth a retry
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"kafka: {type(exc).__name__}")
            raise  # not reached: abort raises


def registration(ops: StatusSource) -> Registration:
    """The service for :class:`~services.runtime.grpc_server.GrpcServer`."""
    return (
        api_pb2_grpc.add_PipelineStatusServiceServicer_to_server,
        PipelineStatusServicer(ops),
        SERVICE_NAME,
    )


def add_to_server(server: grpc.aio.Server, ops: StatusSource) -> None:
    """Serve ``act.v1.PipelineStatusService`` from ``ops`` on ``server``."""
    add, servicer, _ = registration(ops)
    add(servicer, server)
