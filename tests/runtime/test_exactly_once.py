"""Exactly-once stage transitions across SIGKILLs and a broker restart.

A stage built on the runtime (services.devkit.echo.EchoStage) runs as its own
process; the test kills it with SIGKILL at random points of the stream and
restarts it, and reads the output ``read_committed`` all along: every input
must appear exactly once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from act.v1 import annotation_pb2

from services.devkit.kafkaio import make_topics, produce_items, unique_prefix
from services.devkit.stack import LocalBroker, free_port
from tests.support.kafkaio import Collector, spawn_echo_stage

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_ITEMS = 10_000
# About 1,600 items/s (32 handlers, 20 ms mean sleep). The last kill point sits
# 3,000 items before the end, about 2 s of work: far more than the random pause
# before a kill plus the collector's lag. At 4 ms (8,000 items/s) those 2,500
# items took about 0.3 s and the stream could finish before the last kill.
STAGE_ENV = {"ACT_ECHO_DELAY_MS": "20", "ACT_ECHO_MAX_IN_FLIGHT": "32"}


def _assert_exactly_once(collector: Collector, ids: list[str]) -> None:
    seen = [
        annotation_pb2.Annotation.FromString(v).item.item_id
        for _, v in collector.records["annotations"]
    ]
    counts = Counter(seen)
    duplicates = {k: c for k, c in counts.items() if c > 1}
    assert not duplicates, f"{len(duplicates)} items output more than once"
    assert set(seen) == set(ids), f"{len(set(ids) - set(seen))} items lost"
    assert len(seen) == len(ids)
    assert collector.count("dlq") == 0


async def _stop_gracefully(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    for _ in range(600):
        if proc.poll() is not None:
            return proc.returncode
        await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("stage did not stop within 60 s of SIGTERM")


async def test_sigkill_three_times_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path
):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["items", "annotations", "dlq"])
    ids = [f"item-{i:05d}" for i in range(N_ITEMS)]
    await produce_items(kafka, ids)
    collector = Collector(kafka, ["annotations", "dlq"])
    await collector.start()
    log = tmp_path / "stage.log"
    group = f"echo-{kafka.topic_prefix}"
    proc = spawn_echo_stage(kafka, group, log, **STAGE_ENV)
    kills = 0
    try:
        # Kill points: random output counts spread over the stream.
        points = sorted(rng.sample(range(500, N_ITEMS - 3000), 4))
        for point in points:
            await collector.wait_for("annotations", point, timeout=120)
            await asyncio.sleep(rng.uniform(0, 0.3))  # land between transactions or inside one
            assert collector.count("annotations") < N_ITEMS, "stream finished before the kill"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = spawn_echo_stage(kafka, group, log, **STAGE_ENV)
        await collector.wait_for("annotations", N_ITEMS, timeout=240)
        assert await _stop_gracefully(proc) == 0
        await asyncio.sleep(1.0)  # anything committed late would show up now
    finally:
        if proc.poll() is None:
            proc.kill()
        await collector.stop()
    assert kills >= 3, f"seed {seed}"
    _assert_exactly_once(collector, ids)


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory):
    """A broker of this test's own, so restarting it disturbs no other test."""
    broker = LocalBroker(
        state_dir=tmp_path_factory.mktemp("restart-broker"),
        port=free_port(),
        controller_port=free_port(),
    )
    broker.start()
    yield broker
    broker.stop()


async def test_broker_restart_midstream_loses_and_duplicates_nothing(
    own_broker: LocalBroker, tmp_path: Path
):
    kafka = await make_topics(
        own_broker.bootstrap, unique_prefix(), ["items", "annotations", "dlq"]
    )
    ids = [f"item-{i:05d}" for i in range(N_ITEMS)]
    await produce_items(kafka, ids)
    collector = Collector(kafka, ["annotations", "dlq"])
    await collector.start()
    log = tmp_path / "stage.log"
    group = f"echo-{kafka.topic_prefix}"
    proc = spawn_echo_stage(kafka, group, log, **STAGE_ENV)
    try:
        await collector.wait_for("annotations", 3_000, timeout=120)
        assert collector.count("annotations") < N_ITEMS
        await asyncio.to_thread(own_broker.restart)
        # And one crash of the stage after the broker is back, for good measure.
        await collector.wait_for("annotations", collector.count("annotations") + 1_000, timeout=180)
        assert collector.count("annotations") < N_ITEMS
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = spawn_echo_stage(kafka, group, log, **STAGE_ENV)
        await collector.wait_for("annotations", N_ITEMS, timeout=240)
        assert await _stop_gracefully(proc) == 0
        await asyncio.sleep(1.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        await collector.stop()
    _assert_exactly_once(collector, ids)
