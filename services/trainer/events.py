"""Training events: ``FitStarted``, ``EpochCompleted``, ``CheckpointWritten``, ``FitCompleted``...

Events go to ``act.training.events`` through a plain idempotent producer, not
in a transaction: they describe progress, are published at least once, and
carry deterministic ids (``<fit_id>/epoch/3``, see :func:`training_event`) so a
consumer can drop the repeats a resumed fit causes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

import structlog
from act.v1 import training_pb2
from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.topics import default_catalog

log = structlog.get_logger(__name__)


def now_timestamp() -> Timestamp:
    """The current time as a protobuf timestamp."""
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def training_event(
    status: training_pb2.FitStatus, suffix: str, **payload: Any
) -> training_pb2.TrainingEvent:
    """The event ``<fit_id>/<suffix>`` of a fit; ``payload`` sets the event's oneof."""
    return training_pb2.TrainingEvent(
        event_id=f"{status.fit_id}/{suffix}",
        task_id=status.task_id,
        fit_id=status.fit_id,
        at=now_timestamp(),
        **payload,
    )


class EventSink(Protocol):
    """Where training events go (thread-safe)."""

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        """Publish one event; failures are logged, never raised."""
        ...

    def publish_model(self, model: training_pb2.PublishedModel) -> None:
        """Publish a fit's model (``act.models``); failures are logged, never raised."""
        ...


class MemorySink:
    """Keeps events in a list (tests, offline fits)."""

    def __init__(self) -> None:
        self.events: list[training_pb2.TrainingEvent] = []
        self.models: list[training_pb2.PublishedModel] = []
        self._lock = threading.Lock()

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        """Append the event."""
        with self._lock:
            self.events.append(event)

    def publish_model(self, model: training_pb2.PublishedModel) -> None:
        """Append the model."""
        with self._lock:
            self.models.append(model)


class KafkaEventSink:
    """Publishes to ``act.training.events`` and ``act.models`` (keyed by task id)
    with one idempotent producer.

    Not transactional: the events describe progress and are published at
    least once (a resumed fit repeats the events of its unfinished epoch with
    the same deterministic ids); a model published twice replaces itself on
    the compacted topic.
    """

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
        self.kafka = kafka
        catalog = default_catalog()
        self.topic = catalog.name("training_events", kafka.topic_prefix)
        self.models_topic = catalog.name("models", kafka.topic_prefix)
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the producer on the running loop."""
        self._loop = asyncio.get_running_loop()
        # A published model carries its weights: requests up to the topic's 4 MiB.
        self._producer = kafka_clients.idempotent_producer(
            self.kafka, linger_ms=5, max_request_size=4 * 1024 * 1024
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        """Send from any thread and wait for the broker's acknowledgement (bounded)."""
        self._send(self.topic, event.task_id, event.SerializeToString(), event.event_id)

    def publish_model(self, model: training_pb2.PublishedModel) -> None:
        """Send a fit's model like an event (from any thread, bounded wait)."""
        self._send(self.models_topic, model.task_id, model.SerializeToString(), model.fit_id)

    def _send(self, topic: str, task_id: str, value: bytes, what: str) -> None:
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            log.warning("training_event_dropped", reason="producer not started", id=what)
            return
        coro = producer.send_and_wait(topic, value, key=task_id.encode())
        try:
            if _on_loop(loop):
                loop.create_task(coro)  # cannot block the loop we run on
                return
            asyncio.run_coroutine_threadsafe(coro, loop).result(self.timeout_s)
        except Exception as exc:  # informational: a lost event must not fail a fit
            log.warning("training_event_failed", id=what, topic=topic, error=str(exc))


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
