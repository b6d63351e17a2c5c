"""The driver's Kafka edge: one transactional id, its inputs, its state topic.

The driver is one logical instance with ONE transactional id
(``<group>.driver``). Opening the journal initialises that id, which fences
every earlier incarnation (a zombie can no longer commit) and completes or
aborts the transaction it left open; only then are the ``batch_state`` topic
restored (``read_committed``, to its end, which is therefore final) and the
group's committed input offsets read. Inputs (``items`` and the
``batch_pending`` retries) are assigned, not subscribed: there is no group
membership to wait for after a crash, and the transactional id is what
fences, as in the runtime (:mod:`services.runtime.partitions`).

Every effect is one transaction (:meth:`Journal.commit`): records to any
topic, tombstones, and optionally input offsets, which
``send_offsets_to_transaction`` commits for the group atomically with them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from act.v1 import batch_pb2
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.topics import TopicCatalog


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce (``value`` None: a tombstone)."""

    topic: str
    key: str
    value: bytes | None
    headers: Mapping[str, str] = field(default_factory=dict)


class Journal:
    """The transactional producer, the input consumer and the state restore."""

    def __init__(
        self,
        kafka: KafkaSettings,
        catalog: TopicCatalog,
        *,
        group_id: str,
        input_topics: Sequence[str],
        max_record_bytes: int,
    ) -> None:
        self.kafka = kafka
        self.catalog = catalog
        self.group_id = group_id
        self.transactional_id = f"{group_id}.driver"
        self.input_topics = [catalog.name(t, kafka.topic_prefix) for t in input_topics]
        self.state_topic = catalog.name("batch_state", kafka.topic_prefix)
        self.max_record_bytes = max_record_bytes
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    def name(self, topic_id: str) -> str:
        """Broker name of a topic id."""
        return self.catalog.name(topic_id, self.kafka.topic_prefix)

    async def open(self) -> dict[str, batch_pb2.BatchState]:
        """Fence earlier incarnations, restore the open batches, seek the inputs."""
        self._producer = await kafka_clients.fenced_transactional_producer(
            self.kafka, self.transactional_id, max_request_size=self.max_record_bytes
        )
        consumer = kafka_clients.consumer(
            self.kafka,
            group_id=self.group_id,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.max_record_bytes,
        )
        await consumer.start()
        self._consumer = consumer
        await consumer.topics()  # refresh metadata of every topic
        tps = []
        for topic in self.input_topics:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise RuntimeError(f"input topic {topic} does not exist")
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        state = await self._restore(consumer)
        consumer.assign(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        return state

    async def _restore(self, consumer: AIOKafkaConsumer) -> dict[str, batch_pb2.BatchState]:
        """Read ``batch_state`` to its end with the (not yet assigned) input consumer.

        The same scheme as :mod:`services.runtime.changelog`: after the fencing
        nothing of ours is pending, so the end offset covers every committed write.
        Unlike a changelog the topic is shared with the drivers of other stage
        kinds (other transactional ids), whose open transaction holds the last
        stable offset (``read_committed``'s end) back while our own committed
        records may lie beyond it. So the restore reads up to the high
        watermark of the moment too, waiting for such a transaction to end.
        """
        parts = consumer.partitions_for_topic(self.state_topic)
        if not parts:
            raise RuntimeError(f"state topic {self.state_topic} does not exist")
        tps = [TopicPartition(self.state_topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        stable = await consumer.end_offsets(tps)
        marks = await self._high_watermarks(tps)
        ends = {tp: max(stable[tp], marks.get(tp, 0)) for tp in tps}
        await consumer.seek_to_beginning(*tps)
        raw: dict[str, bytes] = {}
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=200, max_records=10_000)
                for record in batch.get(tp, ()):
                    if record.key is None:
                        continue
                    if record.value:
                        raw[record.key.decode()] = record.value
                    else:
                        raw.pop(record.key.decode(), None)
        return {k: batch_pb2.BatchState.FromString(v) for k, v in raw.items()}

    async def _high_watermarks(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """End offsets as ``read_uncommitted`` sees them (open transactions included)."""
        peek = kafka_clients.snapshot_consumer(self.kafka, isolation_level="read_uncommitted")
        await peek.start()
        try:
            return dict(await peek.end_offsets(list(tps)))
        finally:
            await peek.stop()

    async def fetch(self, max_records: int, timeout_ms: int) -> list[ConsumerRecord[bytes, bytes]]:
        """Committed input records in fetch order (per partition, in offset order)."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [r for records in batches.values() for r in records]

    async def commit(
        self, records: Sequence[Record], offsets: Mapping[TopicPartition, int] | None = None
    ) -> None:
        """Produce ``records`` and commit ``offsets`` for the group, in one transaction."""
        producer = self._producer
        assert producer is not None
        await producer.begin_transaction()
        try:
            futures = [
                await producer.send(
                    r.topic,
                    value=r.value,
                    key=r.key.encode(),
                    headers=[(k, v.encode()) for k, v in r.headers.items()],
                )
                for r in records
            ]
            if futures:
                await asyncio.gather(*futures)
            if offsets:
                await producer.send_offsets_to_transaction(dict(offsets), self.group_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), timeout=10)
            raise
        await producer.commit_transaction()

    async def close(self) -> None:
        """Stop the consumer and the producer."""
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer = self._producer = None
