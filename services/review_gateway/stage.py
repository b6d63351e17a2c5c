"""Kafka inputs of the gateway: review requests (a Stage) and task definitions.

Review requests are consumed by :class:`ReviewRequestStage` under the runtime's
exactly-once :class:`~services.runtime.runner.StageRunner`. ``process`` inserts
the request into the queue (insert-or-ignore on ``request_id`` and on
``(task_id, item_id)``) and returns no outputs, so the input offset is committed
only after the insert has committed. A crash in between replays the record and
the insert is ignored: one queue entry per request, whatever the redeliveries.

Task definitions (label sets, instructions) come from the compacted topic
``act.tasks``: :class:`TaskWatcher` reads it from the beginning on every start
(it is small) and upserts each task. The gateway serves only items whose task
it knows, because it cannot validate a label otherwise; such items wait in the
queue, they are never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog
from act.v1 import review_pb2, task_pb2
from aiokafka import TopicPartition
from google.protobuf.message import DecodeError

from services.review_gateway import metrics
from services.review_gateway.labels import request_item
from services.review_gateway.store import ReviewStore
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Identity, Output, Stage
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)


class ReviewRequestStage(Stage[review_pb2.ReviewRequest]):
    """act.review.requests -> the durable review queue (no Kafka outputs).

    A database outage must not dead-letter valid requests (a dropped request
    would bias the ACT loss), so ``process`` retries database errors itself for
    up to ``max_outage_s``; after that it calls ``on_fatal`` (the gateway exits
    non-zero and is restarted) and waits to be cancelled, so the record is
    neither committed nor dead-lettered and is consumed again after the
    restart. Only malformed requests raise PermanentError (dead letter).
    """

    name = "review-gateway"
    input_topic = "review_requests"
    input_type = review_pb2.ReviewRequest

    def __init__(
        self,
        store: ReviewStore,
        *,
        max_outage_s: float = 100.0,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.max_outage_s = max_outage_s
        self.on_fatal = on_fatal

    def identify(self, message: review_pb2.ReviewRequest) -> Identity:
        """Task and item of the request (they live inside the decision)."""
        item = request_item(message)
        return Identity(task_id=item.task_id, item_id=item.item_id)

    async def process(self, envelope: Envelope[review_pb2.ReviewRequest]) -> Sequence[Output]:
        """Queue the request once; bad requests raise PermanentError (dead letter)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.max_outage_s
        delay = 0.1
        while True:
            try:
                inserted = await self.store.enqueue(envelope.message)
                break
            except PermanentError:
                raise
            except Exception as exc:
                if loop.time() + delay > give_up:
                    log.error("database_unavailable", error_type=type(exc).__name__)
                    if self.on_fatal is not None:
                        self.on_fatal("database unavailable")
                    await asyncio.Event().wait()  # until the shutdown cancels us
                log.warning("enqueue_retry", error_type=type(exc).__name__, delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if inserted:
            metrics.ENQUEUED.inc()
        else:
            metrics.DUPLICATE_REQUESTS.inc()
        return ()


class TaskWatcher:
    """Follows the compacted ``act.tasks`` topic into the ``tasks`` table."""

    def __init__(
        self,
        store: ReviewStore,
        kafka: KafkaSettings,
        catalog: TopicCatalog | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        self.topic = (catalog or default_catalog()).name("tasks", kafka.topic_prefix)
        #: Set once the topic was read up to its end at start.
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        """Read tasks until cancelled; retries when the broker is unavailable."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("task_watcher_retry", error_type=type(exc).__name__)
                await asyncio.sleep(2.0)

    async def _follow(self) -> None:
        consumer = kafka_clients.snapshot_consumer(self.kafka)
        try:
            await consumer.start()
            partitions: set[int] | None = None
            for _ in range(50):
                if self.topic in await consumer.topics():
                    partitions = consumer.partitions_for_topic(self.topic)
                if partitions:
                    break
                await asyncio.sleep(0.2)
            if not partitions:
                log.warning("tasks_topic_missing", topic=self.topic)
                self.caught_up.set()
                await asyncio.sleep(5.0)
                return
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        await self._apply(record.value)
                if not self.caught_up.is_set():
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                        self.caught_up.set()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _apply(self, value: bytes | None) -> None:
        if not value:
            return  # a tombstone: tasks are never forgotten while items may need them
        try:
            task = task_pb2.Task.FromString(value)
        except DecodeError:
            log.warning("undecodable_task")
            return
        await self.store.upsert_task(task)
