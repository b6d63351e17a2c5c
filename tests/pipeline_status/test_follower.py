"""The follower on a real broker: a topic created after it started is picked up."""

from __future__ import annotations

import asyncio

import pytest
from act.v1 import review_pb2

from services.devkit.kafkaio import make_topics, produce_items, produce_raw, unique_prefix
from services.pipeline_status.progress import ProgressFollower
from services.runtime.admin import ensure_topics


@pytest.mark.kafka
async def test_a_topic_created_later_is_followed_without_losing_counts(kafka_bootstrap: str):
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["items"], partitions=2)
    await produce_items(kafka, ["a", "b"], task_id="t1")
    follower = ProgressFollower(kafka, recheck_s=0.2)
    await follower.start()
    try:
        assert await follower.sync(20)
        assert follower.progress.tasks["t1"].ingested == 2
        assert any(name.endswith("act.labels.v1") for name in follower.missing)
        await asyncio.sleep(1.0)  # several rechecks: still missing, so no reconnect
        assert follower.connects == 1

        await ensure_topics(kafka, replication=1, topic_ids=["labels"], partitions=2)
        label = review_pb2.FinalLabel(item_id="a", task_id="t1", delta=True)
        await produce_raw(kafka, "labels", b"a", label.SerializeToString())
        await produce_items(kafka, ["c"], task_id="t1")
        for _ in range(50):  # the recheck reconnects within a few polls
            if await follower.sync(5) and follower.progress.tasks["t1"].reviewed:
                break
        task = follower.progress.tasks["t1"]
        assert (task.ingested, task.reviewed, task.finalized) == (3, 1, 1)  # nothing twice
        assert follower.connects == 2
    finally:
        await follower.stop()
