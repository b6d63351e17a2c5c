"""The task registry follows the compacted tasks topic."""

from __future__ import annotations

import asyncio

import pytest
from act.v1 import task_pb2
from aiokafka import AIOKafkaProducer

from services.devkit.kafkaio import make_topics, topic, unique_prefix
from services.runtime.tasks import StaticTaskSource, TaskNotFoundError, TaskRegistry, fold_tasks


def test_fold_keeps_latest_and_honours_tombstones():
    t1 = task_pb2.Task(task_id="a", name="v1")
    t2 = task_pb2.Task(task_id="a", name="v2")
    tasks, bad = fold_tasks([(b"a", t1.SerializeToString()), (b"a", t2.SerializeToString())])
    assert tasks["a"].name == "v2" and bad == 0
    tasks, bad = fold_tasks([(b"a", None), (b"b", b"\xff\xff")], tasks)
    assert tasks == {} and bad == 1


async def test_static_source():
    source = StaticTaskSource([task_pb2.Task(task_id="x")])
    assert (await source.get("x")).task_id == "x"
    with pytest.raises(TaskNotFoundError):
        await source.get("y")


@pytest.mark.kafka
async def test_registry_loads_follows_and_times_out(kafka_bootstrap: str):
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["tasks"], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for task_id in ("t1", "t2"):
            task = task_pb2.Task(task_id=task_id, name=task_id.upper())
            await producer.send_and_wait(
                topic(kafka, "tasks"), task.SerializeToString(), key=task_id.encode()
            )
        registry = TaskRegistry(kafka, wait_s=10)
        await registry.start()
        try:
            assert (await registry.get("t1")).name == "T1"
            late = asyncio.create_task(registry.get("t3"))
            await asyncio.sleep(0.2)
            assert not late.done()
            t3 = task_pb2.Task(task_id="t3", name="T3")
            await producer.send_and_wait(topic(kafka, "tasks"), t3.SerializeToString(), key=b"t3")
            assert (await asyncio.wait_for(late, 10)).name == "T3"
            registry.wait_s = 0.3
            with pytest.raises(TaskNotFoundError):
                await registry.get("missing")
        finally:
            await registry.stop()
    finally:
        await producer.stop()
