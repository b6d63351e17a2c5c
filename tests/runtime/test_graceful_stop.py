"""A graceful stop in the middle of a busy stream commits nothing twice.

The runner's commit loop may be inside a transaction when ``stop()`` comes;
it must finish that transaction (or, if it has to be cancelled, find out
whether it committed) before the shutdown commits the rest. Cancelling it
mid-commit used to let a committed transaction's records be committed again.
The window is narrow (between EndTxn going out and its answer); this test
does not hit it reliably, tests/sampler/test_rebalance.py (bigger
transactions) did in about half of its runs before the fix.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from act.v1 import annotation_pb2

from services.devkit.echo import EchoStage
from services.devkit.kafkaio import make_topics, produce_items, unique_prefix
from services.runtime.config import StageSettings
from services.runtime.runner import StageRunner
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka]


async def test_stopping_mid_stream_repeatedly_loses_and_duplicates_nothing(
    kafka_bootstrap: str,
) -> None:
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["items", "annotations", "dlq"])
    ids = [f"g-{i:05d}" for i in range(6000)]
    await produce_items(kafka, ids)
    collector = Collector(kafka, ["annotations"])
    await collector.start()
    settings = StageSettings(
        group_id=f"stop-{kafka.topic_prefix}", metrics_port=0, grpc_port=0,
        commit_interval_ms=20, commit_max_records=100, session_timeout_ms=6000,
        heartbeat_interval_ms=500, drain_timeout_s=5.0, max_in_flight=32, max_buffered=300,
        fetch_max_records=50,
    )  # fmt: skip
    try:
        for stop_at in (1000, 2500, 4000, None):
            runner = StageRunner(EchoStage(delay_ms=1.0), kafka, settings)
            task = asyncio.create_task(runner.run())
            await asyncio.wait_for(runner.started.wait(), timeout=30)
            if stop_at is None:
                await collector.wait_for("annotations", len(ids), timeout=120)
            else:
                for _ in range(2400):
                    if runner.committed_records > 0 and collector.count("annotations") >= stop_at:
                        break
                    await asyncio.sleep(0.005)
            runner.stop()  # commits are running right now
            await asyncio.wait_for(task, timeout=60)
        await asyncio.sleep(1.0)
        seen = Counter(
            annotation_pb2.Annotation.FromString(v).item.item_id
            for _, v in collector.records["annotations"]
        )
        assert not {k: c for k, c in seen.items() if c > 1}, "items committed twice"
        assert set(seen) == set(ids)
    finally:
        await collector.stop()
