"""Stage heartbeats: each replica's load, for ``GetStatus``.

In-flight handlers and retries live in each replica's memory (and on its
``/metrics``). So that the pipeline-status service can answer "what is
running, what is retrying" without scraping pods, every runner writes a
:class:`~act.v1.heartbeat_pb2.StageHeartbeat` every ``interval_s`` to the
compacted ``stage_heartbeats`` topic, keyed ``"<stage>/<replica>"``, and a
last one with ``stopped = true`` when it stops cleanly. A replica killed
outright just falls silent: readers treat a replica as gone after three
intervals (:func:`is_live`).

Heartbeats are telemetry, outside the exactly-once transactions: a plain
idempotent producer writes them, and no failure here ever reaches the stage
(a missing topic or an unreachable broker is logged once and retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from act.v1 import heartbeat_pb2
from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings

log = structlog.get_logger(__name__)

#: A replica is live until this many of its intervals pass without a heartbeat.
LIVE_INTERVALS = 3.0
#: Seconds between looks for a missing heartbeat topic.
MISSING_TOPIC_RECHECK_S = 60.0


@dataclass(frozen=True, slots=True)
class Load:
    """What a heartbeat reports, sampled from the runner."""

    in_flight: int
    retries: int
    committed_records: int
    assigned_partitions: int


def replica_id() -> str:
    """``<host>-<pid>-<random>``: the pod's name in Kubernetes, and new on every start."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def is_live(beat: heartbeat_pb2.StageHeartbeat, now: datetime) -> bool:
    """True while the replica counts: not stopped, and heard from within three intervals."""
    if beat.stopped or not beat.HasField("sent_at"):
        return False
    age_s = (now - beat.sent_at.ToDatetime(tzinfo=UTC)).total_seconds()
    return bool(age_s <= LIVE_INTERVALS * max(beat.interval_s, 0.001))


class HeartbeatPublisher:
    """Writes one replica's heartbeats until stopped (see the module docstring)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        stage: str,
        sample: Callable[[], Load],
        interval_s: float,
        *,
        replica: str | None = None,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.stage = stage
        self.sample = sample
        self.interval_s = interval_s
        self.replica = replica or replica_id()
        self.started_at = datetime.now(UTC)
        #: Heartbeats written (acknowledged by the broker).
        self.sent = 0
        self._producer = producer
        self._topic_ready = False
        self._next_check = 0.0
        self._warned = False
        self._task: asyncio.Task[None] | None = None

    @property
    def key(self) -> bytes:
        """The record key: ``<stage>/<replica>``."""
        return f"{self.stage}/{self.replica}".encode()

    def start(self) -> None:
        """Start the loop (returns at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="act-heartbeat")

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Stop the loop and write the ``stopped`` heartbeat (best effort, bounded)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._producer is None:
            return
        if self._topic_ready:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send(stopped=True), timeout_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._producer.stop(), timeout_s)
        self._producer = None

    def message(self, *, stopped: bool = False) -> heartbeat_pb2.StageHeartbeat:
        """The heartbeat for now (pure but for the clock and the sample)."""
        load = self.sample()
        beat = heartbeat_pb2.StageHeartbeat(
            stage=self.stage,
            replica=self.replica,
            in_flight=load.in_flight,
            retries=load.retries,
            committed_records=load.committed_records,
            assigned_partitions=load.assigned_partitions,
            interval_s=self.interval_s,
            stopped=stopped,
        )
        beat.started_at.FromDatetime(self.started_at)
        beat.sent_at.CopyFrom(_now())
        return beat

    async def _send(self, *, stopped: bool = False) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.topic, self.message(stopped=stopped).SerializeToString(), key=self.key
        )
        self.sent += 1

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._beat(), timeout=max(self.interval_s, 1.0) * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Telemetry never fails the stage: say so once, keep trying.
                if not self._warned:
                    log.warning("heartbeat_failed", topic=self.topic, error=type(exc).__name__)
                    self._warned = True
            await asyncio.sleep(self.interval_s)

    async def _beat(self) -> None:
        if self._producer is None:
            self._producer = kafka_clients.idempotent_producer(self.kafka)
            try:
                await self._producer.start()
            except BaseException:
                producer, self._producer = self._producer, None
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
        if not self._topic_ready:
            # Without the topic (a deployment that predates it) a send would
            # block on metadata for the producer's whole request timeout. The
            # check asks for this topic's metadata only (a cluster can hold
            # thousands), and a missing topic is looked for again once a minute.
            now = asyncio.get_running_loop().time()
            if now < self._next_check:
                return
            client = self._producer.client
            await client.add_topic(self.topic)
            if self.topic not in client.cluster.topics():
                await client.force_metadata_update()
            if self.topic not in client.cluster.topics():
                self._next_check = now + MISSING_TOPIC_RECHECK_S
                if not self._warned:
                    log.warning("heartbeat_topic_missing", topic=self.topic)
                    self._warned = True
                return
            self._topic_ready = True
        await self._send()


def _now() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts
