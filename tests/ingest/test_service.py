"""The ingest service end to end: real Kafka, real PostgreSQL, a real grpc.aio server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from act.v1 import api_pb2, common_pb2, item_pb2

from services.ingest.ledger import Ledger
from tests.ingest import images
from tests.ingest.conftest import Env, Running, producer_auth, stream, valid_task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def create(running: Running, task_id: str, modality: int = common_pb2.MODALITY_TEXT) -> None:
    await running.stub().CreateTask(
        api_pb2.CreateTaskRequest(task=valid_task(task_id, modality)),
        metadata=producer_auth(),
        timeout=10,
    )


async def test_bad_and_good_items_in_one_stream(env: Env, running: Running) -> None:
    await create(running, "e2e-text")
    await create(running, "e2e-image", common_pb2.MODALITY_IMAGE)
    items = [
        item_pb2.Item(item_id="good-1", task_id="e2e-text", text="hello"),
        item_pb2.Item(item_id="bad-empty", task_id="e2e-text", text=""),
        item_pb2.Item(item_id="bad-task", task_id="no-such-task", text="x"),
        item_pb2.Item(item_id="good-2", task_id="e2e-image", image_bytes=images.png()),
        item_pb2.Item(item_id="bad-image", task_id="e2e-image", image_bytes=images.truncated_png()),
        item_pb2.Item(item_id="bad-ref", task_id="e2e-text", text="x", reference_label=1),
        item_pb2.Item(item_id="good-1", task_id="e2e-text", text="hello"),  # again
        item_pb2.Item(item_id="good-3", task_id="e2e-text", text="world"),
    ]
    summary = await running.stub().Ingest(stream(items), metadata=producer_auth(), timeout=30)
    assert (summary.received, summary.accepted, summary.duplicates, summary.rejected) == (
        8,
        3,
        1,
        4,
    )
    codes = {e.item_id: (e.index, grpc.StatusCode(_status(e.code))) for e in summary.errors}
    assert codes == {
        "bad-empty": (1, grpc.StatusCode.INVALID_ARGUMENT),
        "bad-task": (2, grpc.StatusCode.NOT_FOUND),
        "bad-image": (4, grpc.StatusCode.INVALID_ARGUMENT),
        "bad-ref": (5, grpc.StatusCode.FAILED_PRECONDITION),
    }
    published = {i.item_id: i for i in await env.items() if i.task_id.startswith("e2e-")}
    assert sorted(published) == ["good-1", "good-2", "good-3"]
    assert published["good-2"].image_mime_type == "image/png"


def _status(number: int) -> tuple[int, str]:
    return next(c.value for c in grpc.StatusCode if c.value[0] == number)


async def test_dropped_stream_retried_neither_loses_nor_duplicates(
    env: Env, running: Running
) -> None:
    await create(running, "retry")
    items = [item_pb2.Item(item_id=f"r-{n}", task_id="retry", text=f"t{n}") for n in range(20)]
    stalled = asyncio.Event()

    async def first_twelve_then_hang() -> AsyncIterator[item_pb2.Item]:
        for item in items[:12]:
            yield item
        stalled.set()
        await asyncio.Event().wait()  # the connection drops before the stream ends
        yield items[0]

    call = running.stub().Ingest(first_twelve_then_hang(), metadata=producer_auth(), timeout=30)
    await asyncio.wait_for(stalled.wait(), 10)
    assert running.service.ops is not None
    ledger: Ledger = running.service.ops.ledger
    ids = [i.item_id for i in items]
    # max_in_flight = 5: two full chunks (10 items) are sent and recorded.
    for _ in range(200):
        if len(await ledger.known("retry", ids)) >= 10:
            break
        await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    retry = await running.stub().Ingest(stream(items), metadata=producer_auth(), timeout=30)
    # The ten recorded before the drop come back as duplicates; the two items read
    # but not yet sent may have been published too when the server saw the
    # stream end (then they are duplicates as well): never lost, never twice.
    assert (retry.received, retry.rejected) == (20, 0)
    assert retry.duplicates in (10, 12) and retry.accepted + retry.duplicates == 20
    counts = Counter(i.item_id for i in await env.items() if i.task_id == "retry")
    assert counts == Counter(ids)  # each id exactly once, read_committed


async def test_tasks_create_get_list(running: Running) -> None:
    stub, auth = running.stub(), producer_auth()
    created = await stub.CreateTask(
        api_pb2.CreateTaskRequest(task=valid_task("tasks-1")), metadata=auth, timeout=10
    )
    assert created.task_id == "tasks-1" and created.HasField("created_at")
    again = await stub.CreateTask(
        api_pb2.CreateTaskRequest(task=valid_task("tasks-1")), metadata=auth, timeout=10
    )
    assert again == created  # idempotent on the same definition
    other = valid_task("tasks-1")
    other.name = "another name"
    with pytest.raises(grpc.aio.AioRpcError) as exists:
        await stub.CreateTask(api_pb2.CreateTaskRequest(task=other), metadata=auth, timeout=10)
    assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS
    invalid = valid_task("tasks-bad")
    del invalid.labels[:]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.CreateTask(api_pb2.CreateTaskRequest(task=invalid), metadata=auth, timeout=10)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assigned = await stub.CreateTask(
        api_pb2.CreateTaskRequest(task=valid_task("")), metadata=auth, timeout=10
    )
    assert len(assigned.task_id) == 32
    got = await stub.GetTask(api_pb2.GetTaskRequest(task_id="tasks-1"), metadata=auth, timeout=5)
    assert got == created
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetTask(api_pb2.GetTaskRequest(task_id="nope"), metadata=auth, timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListTasks(
            api_pb2.ListTasksRequest(page_size=2, page_token=token), metadata=auth, timeout=5
        )
        assert len(page.tasks) <= 2
        seen += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert "tasks-1" in seen and assigned.task_id in seen and len(seen) == len(set(seen))
