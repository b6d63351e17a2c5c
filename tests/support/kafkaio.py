"""Kafka helpers for tests: unique topics, producing items, collecting outputs."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from act.v1 import item_pb2
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.topics import default_catalog
from tests.support.procs import spawn_service
from tests.support.stack import REPO_ROOT

REPO = REPO_ROOT
"""Root of the repository (same as ``tests.support.stack.REPO_ROOT``)."""


def unique_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}."


async def make_topics(
    bootstrap: str, prefix: str, topic_ids: Iterable[str], partitions: int = 3
) -> KafkaSettings:
    """Create the given topics under ``prefix``; returns matching settings."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    await ensure_topics(kafka, replication=1, topic_ids=list(topic_ids), partitions=partitions)
    return kafka


def topic(kafka: KafkaSettings, topic_id: str) -> str:
    """Full topic name under the settings' prefix."""
    return default_catalog().name(topic_id, kafka.topic_prefix)


async def produce_items(
    kafka: KafkaSettings, ids: Iterable[str], task_id: str = "task-1"
) -> dict[str, RecordMetadata]:
    """Produce one Item per id (keyed by id); returns where each landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = {}
        for item_id in ids:
            item = item_pb2.Item(item_id=item_id, task_id=task_id, text=f"text of {item_id}")
            futures[item_id] = await producer.send(
                topic(kafka, "items"), item.SerializeToString(), key=item_id.encode()
            )
        return {k: await f for k, f in futures.items()}
    finally:
        await producer.stop()


async def produce_raw(
    kafka: KafkaSettings, topic_id: str, key: bytes, value: bytes
) -> RecordMetadata:
    """Produce raw bytes (for poison records)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        return await producer.send_and_wait(topic(kafka, topic_id), value, key=key)
    finally:
        await producer.stop()


@dataclass
class Collector:
    """Reads topics ``read_committed`` in the background, keeping every record."""

    kafka: KafkaSettings
    topic_ids: list[str]
    records: dict[str, list[tuple[bytes | None, bytes]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.records = {t: [] for t in self.topic_ids}
        self._consumer = AIOKafkaConsumer(
            *(topic(self.kafka, t) for t in self.topic_ids),
            bootstrap_servers=self.kafka.bootstrap_servers,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        names = {topic(self.kafka, t): t for t in self.topic_ids}
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, recs in batches.items():
                self.records[names[tp.topic]].extend((r.key, r.value) for r in recs)

    def count(self, topic_id: str) -> int:
        return len(self.records[topic_id])

    async def wait_for(self, topic_id: str, n: int, timeout: float) -> None:
        """Wait until at least ``n`` records of a topic were read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.count(topic_id) < n:
            if loop.time() > deadline:
                raise TimeoutError(f"{topic_id}: {self.count(topic_id)} of {n} records")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()


def spawn_echo_stage(
    kafka: KafkaSettings, group_id: str, log_path: Path, **env: str
) -> subprocess.Popen[bytes]:
    """Start ``python -m tests.support.stages`` as its own process."""
    stage_env = {
        "ACT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ACT_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "ACT_ECHO_GROUP_ID": group_id,
        "ACT_ECHO_METRICS_PORT": "0",
        "ACT_ECHO_GRPC_PORT": "0",
        "ACT_ECHO_SESSION_TIMEOUT_MS": "6000",
        "ACT_ECHO_HEARTBEAT_INTERVAL_MS": "1000",
        **env,
    }
    return spawn_service("tests.support.stages", stage_env, log_path)
