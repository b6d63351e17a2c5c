"""Restoring a stage's changelog partition: the runtime's one state primitive.

A stage that names a ``changelog_topic`` keeps, per input partition ``p``, a
key -> bytes map in partition ``p`` of that compacted topic. Its writes are
produced by ``p``'s transactional producer in the same transaction as the
outputs and the input offset (:mod:`services.runtime.partitions`), so the
committed changelog is exactly the state after the committed prefix.

Restoring reads partition ``p`` ``read_committed`` from the beginning up to
its end offset, keeping the last value of each key (an empty value is a
tombstone). It runs after the new owner's producer has fenced the previous
one, which completes or aborts any transaction that owner left open; only
``p``'s transactional id writes partition ``p``, so nothing is pending there
and the end offset (the last stable offset) covers every committed write.
Quix Streams' recovery works the same way, with a changelog per store.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings


class ChangelogError(RuntimeError):
    """The changelog cannot be read (missing, not co-partitioned, or too slow)."""


class ChangelogReader:
    """One group-less ``read_committed`` consumer that restores changelog partitions.

    Reads are serialised (the consumer's assignment is shared); they happen
    only when a partition is assigned.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, *, timeout_s: float = 60.0) -> None:
        self.kafka = kafka
        self.topic = topic
        self.timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: int | None = None
        self._lock = asyncio.Lock()

    async def restore(self, partition: int) -> dict[str, bytes]:
        """The committed map of ``partition``: the last value of every key."""
        async with self._lock:
            consumer = await self._started()
            if partition >= await self._count(consumer):
                raise ChangelogError(
                    f"changelog {self.topic} has {self._partitions} partitions, fewer than "
                    f"the input topic: it must be co-partitioned (input partition {partition})"
                )
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            try:
                end = (await consumer.end_offsets([tp]))[tp]
                await consumer.seek_to_beginning(tp)
                state: dict[str, bytes] = {}
                deadline = time.monotonic() + self.timeout_s
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=100, max_records=10_000)
                    for record in batch.get(tp, ()):
                        if record.key is None:
                            continue
                        key = record.key.decode()
                        if record.value:
                            state[key] = record.value
                        else:
                            state.pop(key, None)
                    if time.monotonic() > deadline:
                        raise ChangelogError(
                            f"restoring {self.topic}[{partition}] up to {end} took over "
                            f"{self.timeout_s:.0f}s"
                        )
                return state
            finally:
                consumer.assign([])

    async def close(self) -> None:
        """Stop the consumer (if it was started)."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            # A short fetch wait: a read that reached the end must not sit in
            # the broker's default 500 ms long poll.
            consumer = kafka_clients.snapshot_consumer(self.kafka, fetch_max_wait_ms=50)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def _count(self, consumer: AIOKafkaConsumer) -> int:
        if self._partitions is None:
            await consumer.topics()  # refreshes the metadata of every topic
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                raise ChangelogError(f"changelog topic {self.topic} does not exist")
            self._partitions = len(parts)
        return self._partitions
