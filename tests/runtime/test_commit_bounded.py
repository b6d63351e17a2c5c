"""Commit retries are bounded like recoveries: a stop with failing commits returns.

A failed transaction is followed by a recovery (re-fence, re-read the
committed offset). A recovery that fails ``recovery_attempts`` times is fatal;
before, the commit then just tried again, forever, so a runner stopping with
the broker away (or with a transaction that can never succeed) never
returned. The faults are injected into the runner's committer (its
transactions, and in the broker-away case its producer creation) while the
rest runs against the real broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from services.devkit.echo import EchoStage
from services.devkit.kafkaio import make_topics, produce_items, unique_prefix
from services.runtime.config import StageSettings
from services.runtime.runner import RuntimeFatalError, StageRunner

pytestmark = [pytest.mark.kafka]


@pytest.mark.parametrize("broker_away", [True, False], ids=["broker-away", "txn-always-fails"])
async def test_stop_with_failing_commits_returns(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, broker_away: bool
) -> None:
    kafka = await make_topics(
        kafka_bootstrap, unique_prefix(), ["items", "annotations", "dlq"], partitions=1
    )
    settings = StageSettings(
        group_id=f"bounded-{kafka.topic_prefix}", metrics_port=0, grpc_port=0,
        commit_interval_ms=50, session_timeout_ms=6000, heartbeat_interval_ms=500,
        drain_timeout_s=1.0, recovery_attempts=2, backoff_initial_ms=10, backoff_max_ms=50,
    )  # fmt: skip
    runner = StageRunner(EchoStage(), kafka, settings)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), timeout=30)
        await produce_items(kafka, [f"ok-{i}" for i in range(20)])
        for _ in range(600):
            if runner.committed_records >= 20:
                break
            await asyncio.sleep(0.05)
        assert runner.committed_records >= 20  # commits work before the fault

        committer = runner._committer
        failed = asyncio.Event()

        async def transact(*_: Any) -> None:
            failed.set()
            raise KafkaConnectionError("injected: broker unreachable")

        async def new_producer(tp: TopicPartition) -> Any:
            raise KafkaConnectionError("injected: broker unreachable")

        monkeypatch.setattr(committer, "_transact", transact)
        if broker_away:
            monkeypatch.setattr(committer, "_new_producer", new_producer)
        await produce_items(kafka, [f"late-{i}" for i in range(20)])
        await asyncio.wait_for(failed.wait(), timeout=30)  # a commit is failing now
        runner.stop()
        with pytest.raises(RuntimeFatalError):
            # Before the fix this waited forever (the commit retried endlessly).
            await asyncio.wait_for(asyncio.shield(task), timeout=20)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
