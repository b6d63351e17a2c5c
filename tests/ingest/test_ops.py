"""IngestOps without a broker: flow control, delivery failures, duplicates, stream limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any, cast

import grpc
import pytest
from act.v1 import common_pb2, item_pb2
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from services.ingest.ledger import Ledger
from services.ingest.ops import IngestOps, TaskBook, TooManyStreams
from services.ingest.settings import IngestSettings
from services.runtime.tasks import StaticTaskSource
from tests.ingest.conftest import stream, valid_task


class FakeProducer:
    """Acknowledges records a moment later; fails the ids it is told to."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.fail = fail or {}
        self.sent: list[bytes] = []
        self.pending = 0
        self.max_pending = 0

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        error = self.fail.get(key.decode())
        if isinstance(error, MessageSizeTooLargeError):
            raise error
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending += 1
        self.max_pending = max(self.max_pending, self.pending)

        def settle() -> None:
            self.pending -= 1
            if error is not None:
                future.set_exception(error)
            else:
                self.sent.append(key)
                future.set_result(None)

        asyncio.get_running_loop().call_later(0.001, settle)
        return future


class FakeLedger:
    def __init__(self) -> None:
        self.ids: set[tuple[str, str]] = set()

    async def known(self, task_id: str, item_ids: Collection[str]) -> set[str]:
        return {i for i in item_ids if (task_id, i) in self.ids}

    async def record(self, accepted: Iterable[tuple[str, str]]) -> None:
        self.ids.update(accepted)


def make_ops(producer: FakeProducer, ledger: FakeLedger, **settings: Any) -> IngestOps:
    values: dict[str, Any] = {"max_in_flight": 4, "metrics_port": 0, **settings}
    return IngestOps(
        IngestSettings(**values),
        producer=cast(Any, producer),
        tasks=StaticTaskSource([valid_task("t", common_pb2.MODALITY_TEXT)]),
        book=TaskBook(),
        ledger=cast(Ledger, ledger),
        auth=cast(Any, None),
        items_topic="items",
        tasks_topic="tasks",
    )


def texts(n: int, prefix: str = "i") -> list[item_pb2.Item]:
    return [item_pb2.Item(item_id=f"{prefix}{k}", task_id="t", text="x" * 100) for k in range(n)]


async def test_in_flight_sends_are_bounded_by_items_and_bytes() -> None:
    producer, ledger = FakeProducer(), FakeLedger()
    summary = await make_ops(producer, ledger).ingest(stream(texts(30)))
    assert (summary.accepted, producer.max_pending) == (30, 4)
    producer = FakeProducer()
    by_bytes = make_ops(producer, FakeLedger(), max_in_flight=100, max_in_flight_bytes=1024)
    assert (await by_bytes.ingest(stream(texts(30)))).accepted == 30
    assert producer.max_pending <= 10  # about 1 KiB of ~110-byte items


async def test_failed_deliveries_are_refused_and_not_recorded() -> None:
    failures: dict[str, BaseException] = {
        "i1": KafkaTimeoutError(),
        "i2": MessageSizeTooLargeError(),
    }
    ledger = FakeLedger()
    summary = await make_ops(FakeProducer(failures), ledger).ingest(stream(texts(6)))
    assert (summary.accepted, summary.rejected) == (4, 2)
    codes = {e.item_id: e.code for e in summary.errors}
    assert codes == {
        "i1": grpc.StatusCode.UNAVAILABLE.value[0],
        "i2": grpc.StatusCode.FAILED_PRECONDITION.value[0],
    }
    assert ("t", "i1") not in ledger.ids and ("t", "i0") in ledger.ids
    again = await make_ops(FakeProducer(), ledger).ingest(stream(texts(6)))
    assert (again.accepted, again.duplicates) == (2, 4)


async def test_streams_beyond_the_limit_are_refused() -> None:
    ops = make_ops(FakeProducer(), FakeLedger(), max_streams=1)
    gate = asyncio.Event()

    async def held() -> AsyncIterator[item_pb2.Item]:
        await gate.wait()
        yield texts(1)[0]

    first = asyncio.create_task(ops.ingest(held()))
    await asyncio.sleep(0.01)
    with pytest.raises(TooManyStreams):
        await ops.ingest(stream(texts(1)))
    gate.set()
    assert (await first).accepted == 1
