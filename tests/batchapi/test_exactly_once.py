"""Exactly once under SIGKILLs: the driver as its own process, killed mid-batch, restarted.

The driver is killed (SIGKILL, no warning) at four points: right after a
batch's state record was committed (formed, maybe not submitted); inside
the stand-in's batch creation, before the reply (submitted, but the driver
never learns the remote id); inside a status poll that ends a batch (before
its results are published); and once outputs are being published. After
every restart: each input ends exactly once (one output, or one dead letter
after the last attempt, read ``read_committed``), nothing is lost, and the
stand-in saw every custom_id at most once: a submitted batch is never
submitted again, and a retry is a new attempt with a new custom_id. Run for
the annotator (items -> annotations, both providers) and the criticizer
(annotations -> critiques, Anthropic: its adoption after a lost reply is the
heuristic one).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest
from act.v1 import batch_pb2

from services.annotator.stage import annotation_id
from services.batchapi.standin import ALWAYS_FAIL, BatchStandIn, StandInBatch, StandInConfig
from services.criticizer.stage import critique_id
from services.devkit.processes import free_port, reap, spawn_service, stop, wait_serving
from services.runtime.config import KafkaSettings
from tests.batchapi.support import (
    TASK_ID,
    TOPICS,
    annotations,
    criticized,
    critiques,
    dead_letters,
    expected_dead,
    finished,
    produce,
    produce_annotations,
    setup,
)
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_ITEMS = 240
MAX_ATTEMPTS = 3


class Driver:
    """The driver process, restarted after each kill, on fixed ports."""

    def __init__(
        self, kafka: KafkaSettings, stage: str, kind: str, server: BatchStandIn, log: Path
    ) -> None:
        self.grpc_port = free_port()
        self.log = log
        self.env = {
            "ACT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "ACT_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "ACT_BATCH_PROVIDER": kind,
            "ACT_BATCH_BASE_URL": server.base_url + ("/v1" if kind == "openai" else ""),
            "ACT_BATCH_API_KEY": "sk-test-secret",
            "ACT_BATCH_MODEL": "stand-in-model",
            "ACT_BATCH_STAGE_KIND": stage,
            "ACT_BATCH_GROUP_ID": f"batch-eos-{stage}-{kind}",
            "ACT_BATCH_MAX_REQUESTS": "40",
            "ACT_BATCH_MAX_WAIT_S": "0.5",
            "ACT_BATCH_POLL_S": "0.2",
            "ACT_BATCH_SUBMIT_BACKOFF_S": "0.2",
            "ACT_BATCH_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "ACT_BATCH_ANTHROPIC_SKEW_S": "0",
            "ACT_BATCH_METRICS_PORT": "0",
            "ACT_BATCH_GRPC_PORT": str(self.grpc_port),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.serving = False

    async def start(self) -> None:
        self.serving = False
        self.proc = spawn_service("services.batchapi", self.env, self.log)
        self.starts += 1
        await wait_serving(self.grpc_port, self.proc, what="batch driver", timeout=60)
        self.serving = True

    def kill(self) -> None:
        """SIGKILL now (from anywhere, also inside a stand-in handler); reaped by the test."""
        self.serving = False  # a request it sent before dying must not count as another kill
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def dead(self) -> bool:
        return self.proc is None or self.proc.poll() is not None


@pytest.mark.parametrize(
    ("stage", "kind"),
    [("annotator", "openai"), ("annotator", "anthropic"), ("criticizer", "anthropic")],
)
async def test_every_item_once_and_no_request_billed_twice_under_sigkills(
    kafka_bootstrap: str, tmp_path: Path, stage: str, kind: str
):
    critic = stage == "criticizer"
    send = produce_annotations if critic else produce
    ended = criticized if critic else finished
    kafka = await setup(kafka_bootstrap)
    server = BatchStandIn(
        StandInConfig(error_rate=0.1, expire_rate=0.25, expired_share=0.5, completion_s=0.8)
    )
    await server.start()
    texts = {f"item-{i:04d}": f"message number {i}" for i in range(N_ITEMS)}
    texts |= {f"poison-{i}": f"{ALWAYS_FAIL} {i}" for i in range(4)}
    ids = list(texts)
    # Four waves, one produced after each kill, so every kill point has work after it.
    waves = [ids[k * len(ids) // 4 : (k + 1) * len(ids) // 4] for k in range(4)]
    driver = Driver(kafka, stage, kind, server, tmp_path / "driver.log")
    plan = ["after-form", "mid-submit", "mid-poll", "publishing"]
    kills: list[str] = []
    at_start = {"finished": 0}

    def next_kill() -> str | None:
        return plan[len(kills)] if len(kills) < len(plan) and driver.serving else None

    def kill(point: str) -> None:
        kills.append(point)
        driver.kill()

    def on_event(event: str, batch: StandInBatch) -> None:
        # Inside the stand-in, before its reply: the driver never sees the answer.
        if next_kill() == {"created": "mid-submit", "ended": "mid-poll"}[event]:
            kill(next_kill() or "")

    collector = Collector(kafka, [*TOPICS])
    await collector.start()
    try:
        await send(kafka, {i: texts[i] for i in waves[0]})
        produced = 1
        await driver.start()
        server.on_event = on_event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while len(ended(collector)) < len(texts):
            assert loop.time() < deadline, f"{len(ended(collector))} of {len(texts)} finished"
            if produced < len(waves) and produced <= len(kills):
                await send(kafka, {i: texts[i] for i in waves[produced]})
                produced += 1
            if driver.dead():
                assert driver.proc is not None
                reap(driver.proc)
                await driver.start()
                at_start["finished"] = len(ended(collector))
            elif next_kill() == "after-form" and _formed(collector):
                kill("after-form")  # the SUBMITTING record is committed
            elif next_kill() == "publishing" and len(ended(collector)) > at_start["finished"]:
                kill("publishing")  # this incarnation is publishing results
            await asyncio.sleep(0.02)
        if driver.dead():
            assert driver.proc is not None
            reap(driver.proc)
            await driver.start()
        await asyncio.sleep(1.5)  # quiet: nothing more may arrive, also after a restart
        assert driver.proc is not None
        assert stop(driver.proc) == 0
    finally:
        server.on_event = None
        if driver.proc is not None:
            reap(driver.proc)
        await server.stop()
        await collector.stop()

    assert kills == plan
    assert driver.starts >= 5
    done = ended(collector)
    assert set(done) == set(texts), "an item was lost"
    assert set(done.values()) == {1}, "an item ended twice"
    # (item id, output id, attempts) of every output.
    outputs = (
        [(c.annotation.item.item_id, c.critique_id, c.attempts) for c in critiques(collector)]
        if critic
        else [(a.item.item_id, a.annotation_id, a.attempts) for a in annotations(collector)]
    )
    assert len({o[1] for o in outputs}) == len(outputs)
    key_of = critique_id if critic else annotation_id
    keys = {item_id: key_of(TASK_ID, item_id) for item_id in texts}
    dead = {d.item_id for d in dead_letters(collector)}
    assert all(d.stage == f"batch-{stage}" for d in dead_letters(collector))
    assert dead == expected_dead(server, keys, MAX_ATTEMPTS)
    assert {i for i in texts if i.startswith("poison")} <= dead
    # Billing: every custom_id reached the provider once, and only as many
    # attempts as failures called for.
    assert set(server.submissions.values()) == {1}
    for item_id, output_id, attempts in outputs:
        assert output_id == keys[item_id]
        assert f"{keys[item_id]}-{attempts}" in server.submissions
        assert f"{keys[item_id]}-{attempts + 1}" not in server.submissions
    # Every batch was published and tombstoned.
    last: dict[bytes | None, bytes | None] = {}
    for key, value in collector.records["batch_state"]:
        last[key] = value
    assert last and all(not v for v in last.values())
    assert any(
        batch_pb2.BatchState.FromString(v).requests
        for _, v in collector.records["batch_state"]
        if v
    )
    log = driver.log.read_text(errors="replace")
    assert "sk-test-secret" not in log and "message number" not in log
    assert '"adopted": true' in log


def _formed(collector: Collector) -> bool:
    """A SUBMITTING state record is committed."""
    return any(
        value and batch_pb2.BatchState.FromString(value).phase == batch_pb2.BATCH_PHASE_SUBMITTING
        for _, value in collector.records["batch_state"]
    )
