"""In-flight, retries and live replicas in GetStatus, from the stages' heartbeats.

The pure part (fold, liveness, sums) first; then a real runner on real Kafka
whose handlers are held and made to fail on purpose, so GetStatus can be
compared with what the runner itself counts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from act.v1 import api_pb2, heartbeat_pb2, item_pb2

from services.devkit.echo import EchoStage, echo
from services.devkit.kafkaio import make_topics, produce_items, unique_prefix
from services.pipeline_status.ops import StatusOps
from services.pipeline_status.progress import fold, stage_loads
from services.pipeline_status.settings import PipelineStatusSettings
from services.runtime.config import StageSettings
from services.runtime.heartbeat import is_live
from services.runtime.runner import StageRunner
from services.runtime.stage import Envelope, Output

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _beat(
    stage: str, replica: str, age_s: float, *, in_flight: int = 0, retries: int = 0, **kw: bool
) -> heartbeat_pb2.StageHeartbeat:
    beat = heartbeat_pb2.StageHeartbeat(
        stage=stage, replica=replica, in_flight=in_flight, retries=retries, interval_s=5.0, **kw
    )
    beat.sent_at.FromDatetime(NOW - timedelta(seconds=age_s))
    return beat


def test_a_replica_is_live_for_three_intervals_and_not_after_a_clean_stop():
    assert is_live(_beat("annotator", "a", 14.9), NOW)
    assert not is_live(_beat("annotator", "a", 15.1), NOW)
    assert not is_live(_beat("annotator", "a", 0.0, stopped=True), NOW)
    assert not is_live(heartbeat_pb2.StageHeartbeat(stage="annotator", interval_s=5.0), NOW)


def test_live_replicas_are_summed_per_stage_and_the_latest_heartbeat_wins():
    records = [
        ("stage_heartbeats", _beat("annotator", "a", 9, in_flight=7, retries=1)),
        ("stage_heartbeats", _beat("annotator", "a", 1, in_flight=3, retries=2)),  # a's latest
        ("stage_heartbeats", _beat("annotator", "b", 2, in_flight=4, retries=5)),
        ("stage_heartbeats", _beat("annotator", "dead", 60, in_flight=9, retries=9)),  # silent
        ("stage_heartbeats", _beat("sampler", "s", 1, in_flight=2)),
        ("stage_heartbeats", _beat("sampler", "s", 0, stopped=True)),  # stopped cleanly
        ("stage_heartbeats", _beat("criticizer", "c", 1, in_flight=1)),
    ]
    progress = fold((t, b.SerializeToString()) for t, b in records)
    assert ("sampler", "s") not in progress.replicas
    loads = stage_loads(progress.replicas, NOW)
    assert set(loads) == {"annotator", "criticizer"}
    assert (loads["annotator"].in_flight, loads["annotator"].retries) == (7, 7)
    assert loads["annotator"].live_replicas == 2
    assert loads["criticizer"].live_replicas == 1


class _HeldStage(EchoStage):
    """Echo under the annotator's name: ``hold-`` items wait for ``release``,
    ``flaky-`` items fail their first two attempts."""

    name = "annotator"

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = 0
        self.failures = 0

    async def process(self, envelope: Envelope[item_pb2.Item]) -> Sequence[Output]:
        item_id = envelope.message.item_id
        if item_id.startswith("flaky-") and envelope.attempt <= 2:
            self.failures += 1
            raise RuntimeError("injected")
        if item_id.startswith("hold-"):
            self.holding += 1
            try:
                await self.release.wait()
            finally:
                self.holding -= 1
        return echo(envelope.message, envelope.attempt)


async def _until(condition, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.1)


@pytest.mark.kafka
async def test_get_status_reports_the_runners_in_flight_and_retries(kafka_bootstrap: str):
    topics = ["tasks", "items", "annotations", "dlq", "stage_heartbeats"]
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), topics)
    group_prefix = f"g{uuid.uuid4().hex[:8]}-"
    await produce_items(kafka, [f"hold-{i}" for i in range(5)] + ["flaky-0", "flaky-1", "ok"])
    stage = _HeldStage()
    settings = StageSettings(
        group_id=f"{group_prefix}act-annotator",
        metrics_port=0,
        max_attempts=4,
        backoff_initial_ms=10,
        backoff_max_ms=20,
        status_heartbeat_s=0.3,
    )
    runner = StageRunner(stage, kafka, settings)
    run = asyncio.create_task(runner.run())
    status_settings = PipelineStatusSettings(group_prefix=group_prefix, environment="test")
    ops = await StatusOps.open(status_settings, kafka)

    async def annotator() -> api_pb2.StageStatus:
        status = await ops.get_status(api_pb2.GetStatusRequest())
        return next(s for s in status.stages if s.stage == "annotator")

    try:
        # Five handlers held, two records retried twice each: the runner says so ...
        await _until(lambda: _true(stage.holding == 5 and runner.retries == 4))
        assert runner.in_flight == 5 and stage.failures == 4

        # ... and so does GetStatus, once a heartbeat carries it.
        async def reported() -> bool:
            s = await annotator()
            return (s.in_flight, s.retries, s.live_replicas) == (5, 4, 1)

        await _until(reported)

        stage.release.set()
        await _until(lambda: _true(runner.in_flight == 0))

        async def drained() -> bool:
            return (await annotator()).in_flight == 0

        await _until(drained)
        assert (await annotator()).retries == 4  # since the replica started
    finally:
        stage.release.set()
        runner.stop()
        await run
    try:
        # A clean stop writes a last heartbeat: the replica is gone at once.
        async def gone() -> bool:
            s = await annotator()
            return (s.live_replicas, s.in_flight, s.retries) == (0, 0, 0)

        await _until(gone, timeout_s=10.0)
    finally:
        await ops.close()


async def _true(value: bool) -> bool:
    return value
