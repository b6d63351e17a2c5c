"""The servicer over a stand-in StatusOps: one call, errors as gRPC status codes."""

from __future__ import annotations

import grpc
import pytest
from act.v1 import api_pb2, api_pb2_grpc
from aiokafka.errors import KafkaConnectionError

from services.pipeline_status.api import SERVICE_NAME, add_to_server, registration


class FakeOps:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.requests: list[api_pb2.GetStatusRequest] = []

    async def get_status(self, request: api_pb2.GetStatusRequest) -> api_pb2.PipelineStatus:
        self.requests.append(request)
        if self.fail:
            raise KafkaConnectionError("broker down")
        status = api_pb2.PipelineStatus(tasks_caught_up=True)
        status.tasks.add(task_id=request.task_id or "t1", ingested=3)
        return status


async def _call(ops: FakeOps, request: api_pb2.GetStatusRequest) -> api_pb2.PipelineStatus:
    server = grpc.aio.server()
    add_to_server(server, ops)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = api_pb2_grpc.PipelineStatusServiceStub(channel)
            result: api_pb2.PipelineStatus = await stub.GetStatus(request, timeout=10)
            return result
    finally:
        await server.stop(None)


async def test_get_status_passes_the_request_through():
    ops = FakeOps()
    status = await _call(ops, api_pb2.GetStatusRequest(task_id="t7", include_partitions=True))
    assert [(t.task_id, t.ingested) for t in status.tasks] == [("t7", 3)]
    assert ops.requests[0].include_partitions
    assert registration(ops)[2] == SERVICE_NAME == "act.v1.PipelineStatusService"


async def test_a_kafka_failure_is_unavailable():
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _call(FakeOps(fail=True), api_pb2.GetStatusRequest())
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "KafkaConnectionError" in (failed.value.details() or "")
