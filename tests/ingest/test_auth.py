"""Who may call the IngestService: the gateway's bearer tokens and the producer role."""

from __future__ import annotations

import grpc
import pytest
from act.v1 import api_pb2, item_pb2

from services.review_gateway.auth import bearer_metadata
from tests.ingest.conftest import REVIEWER_TOKEN, Running, producer_auth, stream

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ANONYMOUS: tuple[tuple[str, str], ...] = ()


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        (ANONYMOUS, grpc.StatusCode.UNAUTHENTICATED),
        (bearer_metadata("act_unknown"), grpc.StatusCode.UNAUTHENTICATED),
        (bearer_metadata(REVIEWER_TOKEN), grpc.StatusCode.PERMISSION_DENIED),
    ],
    ids=["no-token", "unknown-token", "reviewer-role"],
)
async def test_refused_callers(
    running: Running, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode
) -> None:
    stub = running.stub()
    with pytest.raises(grpc.aio.AioRpcError) as listed:
        await stub.ListTasks(api_pb2.ListTasksRequest(), metadata=metadata, timeout=5)
    assert listed.value.code() == code
    items = [item_pb2.Item(item_id="a", task_id="t", text="x")]
    with pytest.raises(grpc.aio.AioRpcError) as ingested:
        await stub.Ingest(stream(items), metadata=metadata, timeout=5)
    assert ingested.value.code() == code


async def test_producer_is_let_in(running: Running) -> None:
    page = await running.stub().ListTasks(
        api_pb2.ListTasksRequest(), metadata=producer_auth(), timeout=5
    )
    assert isinstance(page, api_pb2.ListTasksResponse)
