"""The whole path through a real broker: review requests in, FinalLabels out.

The gateway runs in-process (consumer, gRPC, relay, reaper, task registry);
the replay reviewer answers from reference labels with 80 % accuracy.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from act.v1 import api_pb2, common_pb2

from services.devkit.kafkaio import make_topics, unique_prefix
from services.review_gateway.app import Gateway
from services.review_gateway.replay import ReplayConfig, ReplayReviewer
from tests.review_gateway.conftest import Database, gateway_settings
from tests.review_gateway.kafka_support import (
    duplicates,
    final_labels,
    produce_requests,
    produce_task,
)
from tests.review_gateway.support import ADMIN_TOKEN, Client, make_request, make_task
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka]

N = 60


async def test_requests_become_exactly_one_final_label_each(
    database: Database, kafka_bootstrap: str
):
    prefix = unique_prefix()
    kafka = await make_topics(
        kafka_bootstrap, prefix, ["review_requests", "labels", "tasks", "dlq"], partitions=3
    )
    await produce_task(kafka, make_task())
    requests = [
        make_request(n, machine_label=n % 3, reference_label=(n + 1) % 3, priority=n % 4)
        for n in range(N)
    ]
    broken = make_request(999)
    broken.decision.pi = 0.0
    # Every request twice (a sampler replay), plus one that can never be queued.
    await produce_requests(kafka, [*requests, *requests[: N // 2], broken, *requests[N // 2 :]])
    collector = Collector(kafka, ["labels", "dlq"])
    await collector.start()
    settings = gateway_settings(
        database,
        group_id=f"gw-{prefix}",
        expose_reference_labels=True,
        reaper_interval_s=0.5,
        outbox_poll_interval_s=0.05,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    gateway = Gateway(settings, kafka, host="127.0.0.1")
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            admin = Client(channel, ADMIN_TOKEN)
            created = await admin.CreateReviewer(api_pb2.CreateReviewerRequest(name="replay"))
            # The consumer joins its group first (seconds): start reviewing
            # once everything is queued, so the idle timeout cannot race it.
            for _ in range(600):
                try:
                    stats = await admin.GetTaskStats(api_pb2.GetTaskStatsRequest(task_id="task-1"))
                    if stats.pending == N:
                        break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.NOT_FOUND
                await asyncio.sleep(0.1)
            assert stats.pending == N
        reviewer = ReplayReviewer(
            ReplayConfig(
                target=f"127.0.0.1:{gateway.port}",
                token=created.token,
                task_id="task-1",
                accuracy=0.8,
                concurrency=4,
                idle_seconds=3.0,
                seed=11,
                record=True,
            )
        )
        summary = await asyncio.wait_for(reviewer.run(), 120)
        assert summary.submitted == N and summary.duplicates == 0
        await collector.wait_for("labels", N, timeout=30)
        await collector.wait_for("dlq", 1, timeout=30)
        await asyncio.sleep(1.0)
    finally:
        await gateway.stop()
        await collector.stop()
    labels = final_labels(collector)
    assert not duplicates(labels)
    by_item = {label.item_id: label for label in labels}
    assert set(by_item) == {f"item-{n}" for n in range(N)}
    wrong = 0
    for n in range(N):
        label = by_item[f"item-{n}"]
        truth = (n + 1) % 3
        assert label.source == common_pb2.LABEL_SOURCE_HUMAN and label.delta
        assert label.machine_label == n % 3
        assert label.human_label == label.label_index == reviewer.answer(label.item_id, truth, 3)
        assert label.reviewer_id == created.reviewer_id and label.review_id
        assert label.pi == pytest.approx(0.25) and label.eps == pytest.approx(0.75)
        assert label.leased_at.ToMicroseconds() <= label.submitted_at.ToMicroseconds()
        assert label.item.reference_label == truth  # the trainer's copy keeps it
        wrong += label.human_label != truth
    assert wrong == summary.wrong
    assert 2 <= wrong <= 24  # 20 % of 60 errors expected, seeded
