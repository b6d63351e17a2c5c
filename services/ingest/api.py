"""The gRPC ``act.v1.IngestService``: a thin edge over :class:`~.ops.IngestOps`.

Status codes of a whole call (the review gateway's conventions,
:mod:`services.review_gateway.api`):

* UNAUTHENTICATED: no ``authorization: Bearer`` metadata, an unknown token or
  a disabled account's token. Checked first, before any argument or item.
* PERMISSION_DENIED: a valid token without the producer (or admin) role.
* INVALID_ARGUMENT: CreateTask of an invalid task (every problem listed), a
  missing task id, a page token this service did not issue.
* NOT_FOUND: GetTask of an unknown task.
* ALREADY_EXISTS: CreateTask with the id of a task with another definition
  (the same definition returns the existing task).
* RESOURCE_EXHAUSTED: one message larger than ``max_request_bytes``
  (enforced by the transport; it ends an Ingest stream).
* UNAVAILABLE: Kafka or the database failed; the call may be retried (an
  Ingest retry is safe: accepted ids come back as duplicates).

Ingest answers OK with an :class:`act.v1.IngestSummary` even when items were
refused: each refusal is an ``IngestError`` with its index, item id, a message
free of item content and the status code number that item would have got:
NOT_FOUND (unknown task; per item, since items of one stream can name
different tasks), INVALID_ARGUMENT (missing ids, no content, modality
mismatch, text/question/metadata over their limits, bytes that are not what
the MIME type says, an undecodable image, an image over the pixel budget,
VQA without a question, a reference label out of range),
FAILED_PRECONDITION (an image over the inline limit, or an item over Kafka's
record limit: claim check required; a reference label while
``allow_reference_labels`` is off) and UNAVAILABLE (Kafka did not take the
record; send it again). Duplicates (ids accepted before for the task) are
counted in ``IngestSummary.duplicates``, not refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import structlog
from act.v1 import api_pb2, api_pb2_grpc, item_pb2, task_pb2
from aiokafka.errors import KafkaError

from services.ingest import metrics
from services.ingest.ops import IngestOps, require_producer
from services.review_gateway.errors import answer_rpc, is_unavailable
from services.runtime.grpc_server import Registration

log = structlog.get_logger(__name__)

SERVICE_NAME = "act.v1.IngestService"

T = TypeVar("T")


def _unavailable(exc: BaseException) -> bool:
    """Kafka or the database failed: the client may retry (an Ingest retry is safe)."""
    return isinstance(exc, KafkaError) or is_unavailable(exc)


class IngestServicer(api_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]
    """Each RPC authenticates the caller, calls :class:`IngestOps`, answers."""

    def __init__(self, ops: IngestOps) -> None:
        self.ops = ops

    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        handler: Callable[[], Awaitable[T]],
    ) -> T:
        async def call() -> T:
            caller = await self.ops.auth.authenticate(context.invocation_metadata())
            require_producer(caller)
            return await handler()

        return await answer_rpc(
            method,
            context,
            call,
            calls=metrics.RPCS,
            latency=metrics.RPC_LATENCY,
            unavailable=_unavailable,
            unavailable_message="Kafka or the database is unavailable, retry",
        )

    async def CreateTask(
        self, request: api_pb2.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_pb2.Task:
        """Validate and publish a task (idempotent for the same definition)."""
        return await self._call("CreateTask", context, lambda: self.ops.create_task(request.task))

    async def GetTask(
        self, request: api_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_pb2.Task:
        """The latest version of a task."""

        async def handle() -> task_pb2.Task:
            return self.ops.get_task(request.task_id)

        return await self._call("GetTask", context, handle)

    async def ListTasks(
        self, request: api_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListTasksResponse:
        """One page of tasks, oldest first."""

        async def handle() -> api_pb2.ListTasksResponse:
            return self.ops.list_tasks(request.page_size, request.page_token)

        return await self._call("ListTasks", context, handle)

    async def Ingest(
        self,
        request_iterator: AsyncIterator[item_pb2.Item],
        context: grpc.aio.ServicerContext,
    ) -> api_pb2.IngestSummary:
        """Validate and publish a client stream of items; per-item outcomes."""
        summary = await self._call("Ingest", context, lambda: self.ops.ingest(request_iterator))
        log.info(
            "ingest_stream",
            received=summary.received,
            accepted=summary.accepted,
            duplicates=summary.duplicates,
            rejected=summary.rejected,
        )
        return summary


def registration(servicer: IngestServicer) -> Registration:
    """What :class:`~services.runtime.grpc_server.GrpcServer` needs to serve it."""
    return (api_pb2_grpc.add_IngestServiceServicer_to_server, servicer, SERVICE_NAME)
