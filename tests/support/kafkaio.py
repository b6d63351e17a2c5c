"""Kafka helpers for tests: unique topics, producing items, collecting outputs."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from services.devkit.kafkaio import topic
from services.devkit.processes import spawn_service
from services.devkit.stack import REPO_ROOT
from services.runtime.config import KafkaSettings

REPO = REPO_ROOT
"""Root of the repository (same as ``services.devkit.stack.REPO_ROOT``)."""


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
    """Start ``python -m services.devkit.echo`` as its own process."""
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
    return spawn_service("services.devkit.echo", stage_env, log_path)
