"""Poison records end in the dead-letter topic while the rest flows."""

from __future__ import annotations

import asyncio

import pytest
from act.v1 import annotation_pb2, dlq_pb2

from services.devkit.echo import EchoStage
from services.devkit.kafkaio import make_topics, produce_items, produce_raw, topic, unique_prefix
from services.runtime.config import StageSettings
from services.runtime.runner import StageRunner
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka]


async def test_undecodable_and_always_failing_records_are_dead_lettered(kafka_bootstrap: str):
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["items", "annotations", "dlq"])
    good = [f"good-{i}" for i in range(300)]
    failing = [f"poison-{i}" for i in range(4)]
    permanent = [f"perm-{i}" for i in range(2)]
    sent = {}
    # Interleave: poison records sit between good ones in the same partitions.
    sent.update(await produce_items(kafka, good[:100] + failing[:2] + permanent))
    garbage = b"\xff\xff\xff\xff\x0f"
    raw_meta = await produce_raw(kafka, "items", b"garbage-key", garbage)
    sent.update(await produce_items(kafka, good[100:] + failing[2:]))

    collector = Collector(kafka, ["annotations", "dlq"])
    await collector.start()
    settings = StageSettings(
        group_id=f"poison-{kafka.topic_prefix}",
        metrics_port=0,
        max_attempts=3,
        backoff_initial_ms=10,
        backoff_max_ms=50,
    )
    runner = StageRunner(
        EchoStage(fail_prefix="poison-", permanent_prefix="perm-"), kafka, settings
    )
    task = asyncio.create_task(runner.run())
    try:
        await collector.wait_for("annotations", len(good), timeout=60)
        await collector.wait_for("dlq", len(failing) + len(permanent) + 1, timeout=60)
    finally:
        runner.stop()
        await task
        await asyncio.sleep(0.5)
        await collector.stop()

    outputs = [
        annotation_pb2.Annotation.FromString(v).item.item_id
        for _, v in collector.records["annotations"]
    ]
    assert sorted(outputs) == sorted(good)
    letters = [dlq_pb2.DeadLetter.FromString(v) for _, v in collector.records["dlq"]]
    assert len(letters) == len(failing) + len(permanent) + 1
    by_item = {letter.item_id: letter for letter in letters if letter.item_id}
    items_topic = topic(kafka, "items")
    for item_id in failing + permanent:
        letter = by_item[item_id]
        assert letter.stage == "echo"
        assert letter.original_topic == items_topic
        assert letter.original_partition == sent[item_id].partition
        assert letter.original_offset == sent[item_id].offset
        assert letter.task_id == "task-1"
        assert letter.failed_at.seconds > 0
    for item_id in failing:
        assert by_item[item_id].attempts == 3
        assert by_item[item_id].error_type == "RuntimeError"
    for item_id in permanent:
        assert by_item[item_id].attempts == 1
        assert by_item[item_id].error_type == "PermanentError"
    (undecodable,) = [letter for letter in letters if not letter.item_id]
    assert undecodable.original_value == garbage
    assert undecodable.original_key == b"garbage-key"
    assert undecodable.original_offset == raw_meta.offset
    assert "undecodable" in undecodable.error_message
