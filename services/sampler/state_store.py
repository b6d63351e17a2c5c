"""Reading the sampler's changelog (``act.sampler.state``) and its committed offsets.

The runner commits a record's outputs, the sampler's state snapshot among
them, in the same Kafka transaction as the record's input offset. The latest
*committed* snapshot of a key is therefore exactly the state after the last
committed record it covers, and restoring means: read the key's partition of
the compacted topic up to its end, under ``read_committed``, and keep the
last value of the key.

"Up to its end" is the high watermark when the read starts, not the last
stable offset: a snapshot committed *after* another producer's still open
transaction lies above the LSO and only becomes readable once that
transaction ends, so the read waits for it (bounded by ``timeout_s``).

Snapshots are keyed ``"<task>:<partition>"`` and land where the default
(murmur2) partitioner puts the key, since a stage's outputs cannot choose a
partition; the reader computes the same partition. (The proto comment on
``SamplerState`` describes "keyed by task_id, same partition number"; that
needs a partition-aware ``Output`` in the runtime.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from act.v1 import sampling_pb2
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from services.runtime.config import KafkaSettings
from services.runtime.retry import RetryableError


class StateBackend(Protocol):
    """What :class:`~services.sampler.service.SamplerStage` needs from Kafka (fakeable)."""

    async def start(self) -> None:
        """Open clients."""

    async def stop(self) -> None:
        """Close clients."""

    async def latest(self, key: str) -> sampling_pb2.SamplerState | None:
        """The latest committed state record of ``key``, or None."""

    async def committed(self, partition: int) -> int | None:
        """The stage group's committed offset of an input partition, or None."""

    async def input_partitions(self) -> int:
        """Number of partitions of the input topic."""

    async def replay(self, partition: int, start: int, end: int) -> list[tuple[int, bytes]]:
        """Committed input records ``start <= offset < end`` of ``partition``: (offset, value)."""


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the default producer partitioner (murmur2) gives ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class KafkaStateStore:
    """:class:`StateBackend` on a real broker.

    Two consumers without a group: a ``read_committed`` reader and a
    ``read_uncommitted`` probe used only to ask for high watermarks (the
    reader's own ListOffsets would answer with the last stable offset), plus
    an admin client for the group's committed offsets. Reads are serialised
    (the reader's assignment is shared); they happen only when a ``(task,
    partition)`` is first used, after a re-delivery or takeover, and when a
    batch is first seen, so this is not on the hot path.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        state_topic: str,
        input_topic: str,
        group_id: str,
        timeout_s: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.state_topic = state_topic
        self.input_topic = input_topic
        self.group_id = group_id
        self.timeout_s = timeout_s
        self._reader: AIOKafkaConsumer | None = None
        self._probe: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()
        self._partitions: dict[str, int] = {}

    async def start(self) -> None:
        """Open the reader, the probe and the admin client."""
        common = {"group_id": None, "enable_auto_commit": False, **self.kafka.client_kwargs()}
        # A short fetch wait: a read that has reached the end must not sit in
        # the broker's default 500 ms long poll.
        self._reader = AIOKafkaConsumer(
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            **common,
        )
        self._probe = AIOKafkaConsumer(isolation_level="read_uncommitted", **common)
        self._admin = AIOKafkaAdminClient(**self.kafka.client_kwargs())
        await self._reader.start()
        await self._probe.start()
        await self._admin.start()

    async def stop(self) -> None:
        """Close the clients."""
        for consumer in (self._reader, self._probe):
            if consumer is not None:
                await consumer.stop()
        self._reader = self._probe = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _partition_count(self, topic: str) -> int:
        cached = self._partitions.get(topic)
        if cached:
            return cached
        assert self._admin is not None, "start() first"
        described = await self._admin.describe_topics([topic])
        parts = [t for t in described if t.get("topic") == topic]
        if not parts or parts[0].get("error_code") or not parts[0].get("partitions"):
            raise RetryableError(f"topic {topic} is not available")
        count = len(parts[0]["partitions"])
        self._partitions[topic] = count
        return count

    async def input_partitions(self) -> int:
        """Partitions of the input topic (cached)."""
        return await self._partition_count(self.input_topic)

    async def committed(self, partition: int) -> int | None:
        """The stage group's committed offset of ``partition`` of the input topic."""
        assert self._admin is not None, "start() first"
        tp = TopicPartition(self.input_topic, partition)
        offsets = await self._admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
        meta = offsets.get(tp)
        if meta is None or meta.offset < 0:
            return None
        return int(meta.offset)

    async def _read(self, tp: TopicPartition, start: int | None, end: int) -> list[ConsumerRecord]:
        """Committed records of ``tp`` from ``start`` (None: the beginning) until the
        reader's position reaches ``end``; waits out transactions open below ``end``."""
        reader = self._reader
        assert reader is not None, "start() first"
        reader.assign([tp])
        try:
            if start is None:
                await reader.seek_to_beginning(tp)
            else:
                reader.seek(tp, start)
            deadline = time.monotonic() + self.timeout_s
            records: list[ConsumerRecord] = []
            while await reader.position(tp) < end:
                batch = await reader.getmany(tp, timeout_ms=100, max_records=10_000)
                records.extend(batch.get(tp, ()))
                if time.monotonic() > deadline:
                    raise RetryableError(
                        f"reading {tp.topic}[{tp.partition}] up to {end} took over "
                        f"{self.timeout_s:.0f}s (a transaction left open?)"
                    )
            return records
        finally:
            reader.assign([])

    async def latest(self, key: str) -> sampling_pb2.SamplerState | None:
        """Read the key's partition of the state topic to its end; the last value wins.

        The end is the high watermark when the read starts: a snapshot
        committed after another producer's still open transaction lies above
        the last stable offset, and the read waits until it is readable.
        """
        probe = self._probe
        assert probe is not None, "start() first"
        wanted = key.encode()
        async with self._lock:
            n = await self._partition_count(self.state_topic)
            tp = TopicPartition(self.state_topic, key_partition(wanted, n))
            end = (await probe.end_offsets([tp]))[tp]
            value: bytes | None = None
            for record in await self._read(tp, None, end):
                if record.key == wanted:
                    value = record.value  # None = tombstone
        return sampling_pb2.SamplerState.FromString(value) if value else None

    async def replay(self, partition: int, start: int, end: int) -> list[tuple[int, bytes]]:
        """Committed input records in ``[start, end)`` of ``partition`` (read_committed).

        ``end`` is the offset of a record the runner has delivered, so every
        transaction below it is decided and the read cannot block on the LSO.
        """
        if end <= start:
            return []
        async with self._lock:
            tp = TopicPartition(self.input_topic, partition)
            records = await self._read(tp, start, end)
        return [
            (r.offset, r.value) for r in records if start <= r.offset < end and r.value is not None
        ]
