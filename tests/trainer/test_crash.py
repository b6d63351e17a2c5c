"""SIGKILL the trainer process mid-fit, restart it, and check it resumes where it was.

The trainer runs as its own process (``python -m services.trainer``) against
the real broker, on unique topics. Final labels (with duplicates) stream in;
a fit is started over gRPC; once it has written a checkpoint the process is
SIGKILLed, more labels (and more duplicates) arrive while it is down, and it
is restarted. Afterwards:

* the fit finished, and it continued from its checkpoint: epoch 1 was trained
  once, the epochs after the checkpoint followed, and there is one FitStarted;
* the store holds every distinct item exactly once, despite duplicates and the
  redelivery of records whose offsets the killed process had not committed;
* SIGTERM stops the process cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path

import grpc
import pytest
from act.v1 import api_pb2, api_pb2_grpc, training_pb2
from aiokafka import AIOKafkaProducer

from services.devkit.kafkaio import make_topics, topic, unique_prefix
from services.devkit.processes import (
    read_log,
    reap,
    sigkill,
    sigterm,
    spawn_service,
    wait_serving,
    wait_until,
)
from services.devkit.stack import free_port
from services.runtime.config import KafkaSettings
from tests.support.kafkaio import Collector
from tests.trainer.support import TASK, make_label

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FIRST = 900  # labels before the kill
LATER = 300  # labels produced while the trainer is down
EPOCHS = 8
MODULE = "services.trainer"


async def _produce(kafka: KafkaSettings, ids: list[int]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic(kafka, "labels"),
                make_label(i).SerializeToString(),
                key=f"item-{i:05d}".encode(),
            )
            for i in ids
        ]
        for f in futures:
            await f
    finally:
        await producer.stop()


def _stored(db: Path) -> tuple[int, int]:
    """(rows, distinct item ids) in the trainer's store, read from another process."""
    if not db.exists():
        return 0, 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT item_id) FROM labels").fetchone()
    except sqlite3.OperationalError:  # schema not created yet
        return 0, 0
    finally:
        conn.close()
    return int(rows[0]), int(rows[1])


async def test_sigkill_mid_fit_resumes_from_checkpoint(kafka_bootstrap: str, tmp_path: Path):
    prefix = unique_prefix()
    kafka = await make_topics(
        kafka_bootstrap, prefix, ["labels", "training_events", "dlq"], partitions=3
    )
    port = free_port()
    db = tmp_path / "store.sqlite"
    env = {
        "ACT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ACT_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "ACT_TRAINER_GROUP_ID": f"trainer-{prefix}",
        "ACT_TRAINER_GRPC_PORT": str(port),
        "ACT_TRAINER_METRICS_PORT": "0",
        "ACT_TRAINER_STORE_PATH": str(db),
        "ACT_TRAINER_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "ACT_TRAINER_USE_TASK_REGISTRY": "false",
        "ACT_TRAINER_TORCH_THREADS": "1",
        "ACT_TRAINER_SESSION_TIMEOUT_MS": "6000",
        "ACT_TRAINER_HEARTBEAT_INTERVAL_MS": "1000",
        "ACT_TRAINER_LOG_JSON": "false",
    }
    log = tmp_path / "trainer.log"
    collector = Collector(kafka, ["training_events", "dlq"])
    await collector.start()
    # The first wave, with every 4th label sent twice.
    first_ids = list(range(FIRST)) + list(range(0, FIRST, 4))
    await _produce(kafka, first_ids)
    proc = spawn_service(MODULE, env, log)
    try:
        await wait_serving(port, proc, what="trainer", timeout=90)
        await wait_until(
            lambda: _stored(db)[1] >= FIRST, 120, "the first wave stored", interval=0.1
        )
        config = training_pb2.FitConfig(
            model="cnn-28x28",
            epochs=EPOCHS,
            batch_size=32,
            power_lambda=0.8,
            seed=7,
            loss=training_pb2.LOSS_KIND_ACT,
        )
        config.params["num_classes"] = "4"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = api_pb2_grpc.TrainingServiceStub(channel)
            fit = await stub.StartFit(
                api_pb2.StartFitRequest(task_id=TASK, config=config, idempotency_key="crash")
            )
            # Wait for a checkpoint (epoch >= 2), then kill without warning.
            for _ in range(600):
                status = await stub.GetFit(api_pb2.GetFitRequest(fit_id=fit.fit_id))
                if status.epoch >= 2:
                    break
                await asyncio.sleep(0.1)
            assert status.epoch >= 2, status
            assert status.epoch < EPOCHS, "the fit finished before the kill; make it longer"
        killed_at = status.epoch
        sigkill(proc)
        # Labels arrive while the trainer is down: new ones and duplicates of old ones.
        await _produce(kafka, list(range(FIRST, FIRST + LATER)) + list(range(0, FIRST, 7)))
        proc = spawn_service(MODULE, env, log)
        await wait_serving(port, proc, what="trainer", timeout=90)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = api_pb2_grpc.TrainingServiceStub(channel)
            for _ in range(1800):
                status = await stub.GetFit(api_pb2.GetFitRequest(fit_id=fit.fit_id))
                if status.state != training_pb2.FIT_STATE_RUNNING:
                    break
                await asyncio.sleep(0.1)
            # A retried StartFit with the same key returns the same fit.
            again = await stub.StartFit(
                api_pb2.StartFitRequest(task_id=TASK, config=config, idempotency_key="crash")
            )
        await wait_until(
            lambda: _stored(db)[1] >= FIRST + LATER, 120, "the second wave stored", interval=0.1
        )
        await collector.wait_for("training_events", 1, timeout=30)
        await asyncio.sleep(1.0)
        code = sigterm(proc, timeout=60)
        assert code == 0, "graceful stop failed"
    finally:
        reap(proc)
        await collector.stop()

    assert status.state == training_pb2.FIT_STATE_SUCCEEDED, (status.error, read_log(log)[-3000:])
    assert again.fit_id == fit.fit_id
    assert status.epoch == EPOCHS
    # The fit trained on its snapshot: the labels of the first wave, not the later ones.
    assert status.labels_used + status.metrics["validation_items"] <= FIRST
    # Every label counted once: rows == distinct ids == items produced.
    rows, distinct = _stored(db)
    assert rows == distinct == FIRST + LATER
    assert collector.count("dlq") == 0
    # Resumed, not restarted: epoch events cover 1..EPOCHS, epoch 1 once, one FitStarted.
    events = [
        training_pb2.TrainingEvent.FromString(v) for _, v in collector.records["training_events"]
    ]
    kinds = Counter(e.WhichOneof("event") for e in events)
    assert kinds["started"] == 1 and kinds["completed"] == 1
    epochs = Counter(e.epoch.epoch for e in events if e.WhichOneof("event") == "epoch")
    assert set(epochs) == set(range(1, EPOCHS + 1))
    assert all(epochs[e] == 1 for e in range(1, killed_at + 1)), epochs
    history = json.loads((tmp_path / "checkpoints" / fit.fit_id / "metrics.json").read_text())
    assert [h["epoch"] for h in history["history"]] == list(range(1, EPOCHS + 1))
    assert "fit_resumed" in read_log(log)
