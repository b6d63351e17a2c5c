"""A compacted topic as an in-memory table: the latest record of each key.

Small, slowly changing definitions travel on compacted topics keyed by id
(tasks on ``act.tasks``, the trainer's published models on ``act.models``).
A service keeps a :class:`CompactedTable` that reads the topic from the
beginning and stays current, so lookups are in memory; a tombstone (a record
without value) deletes its key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import DecodeError, Message

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=Message)


def fold_records(
    records: Iterable[tuple[bytes | None, bytes | None]],
    parse: Callable[[bytes], M],
    key_of: Callable[[M], str],
    table: dict[str, M] | None = None,
) -> tuple[dict[str, M], list[M], int]:
    """Apply (key, value) records of a compacted topic in order (pure).

    A tombstone (no value) deletes its key; a value is stored under
    ``key_of(value)``, or the record's key when that is empty. Returns the
    table, the decoded values in order, and the number of undecodable
    records skipped.
    """
    table = {} if table is None else table
    values: list[M] = []
    bad = 0
    for key, value in records:
        name = key.decode("utf-8", "replace") if key is not None else ""
        if value is None:
            table.pop(name, None)
            continue
        try:
            message = parse(value)
        except DecodeError:
            bad += 1
            continue
        table[key_of(message) or name] = message
        values.append(message)
    return table, values, bad


class CompactedTable(Generic[M]):
    """Follows a compacted topic from its beginning; lookups are in memory.

    ``on_value`` is called with every value read, in order (e.g. the review
    gateway's upsert of each task into its database). After an error the
    table reconnects and reads the topic again from the beginning (it is
    small and compacted, and applying a record twice is harmless), so it
    never silently stops updating.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic_id: str,
        parse: Callable[[bytes], M],
        key_of: Callable[[M], str],
        *,
        on_value: Callable[[M], Awaitable[None]] | None = None,
        catalog: TopicCatalog | None = None,
        retry_s: float = 2.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.kafka = kafka
        self.topic = (catalog or default_catalog()).name(topic_id, kafka.topic_prefix)
        self.parse = parse
        self.key_of = key_of
        self.on_value = on_value
        self.retry_s = retry_s
        self.start_timeout_s = start_timeout_s
        self.table: dict[str, M] = {}
        self._changed = asyncio.Condition()
        self._caught_up = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the topic to its current end, then keep following it.

        Raises when the topic does not exist (run ``act topics ensure``) or is
        not read to its end within ``start_timeout_s``.
        """
        consumer = await self._open()
        self._reader = asyncio.create_task(self._follow_forever(consumer), name=self.topic)
        caught_up = asyncio.create_task(self._caught_up.wait())
        try:
            done, _ = await asyncio.wait(
                {caught_up, self._reader},
                timeout=self.start_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            caught_up.cancel()
        if self._reader in done:
            self._reader.result()  # the follower ended: re-raise why
        if not self._caught_up.is_set():
            await self.stop()
            raise TimeoutError(f"{self.topic} not read to its end in {self.start_timeout_s} s")

    async def _open(self) -> AIOKafkaConsumer:
        """A consumer assigned to every partition of the topic, at the beginning."""
        consumer = kafka_clients.snapshot_consumer(self.kafka)
        await consumer.start()
        try:
            await consumer.topics()  # loads cluster metadata; partitions_for_topic reads it
            partitions = sorted(consumer.partitions_for_topic(self.topic) or ())
            if not partitions:
                raise RuntimeError(f"topic {self.topic} does not exist: run `act topics ensure`")
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        return consumer

    async def _follow_forever(self, consumer: AIOKafkaConsumer) -> None:
        current: AIOKafkaConsumer | None = consumer
        while True:
            try:
                if current is None:
                    current = await self._open()  # stops its consumer if it fails
                await self._follow(current)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("table_retry", topic=self.topic, error=type(exc).__name__)
            finally:
                if current is not None:
                    with contextlib.suppress(Exception):
                        await current.stop()
                    current = None
            await asyncio.sleep(self.retry_s)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        end = await consumer.end_offsets(tps)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            records = [(r.key, r.value) for tp in tps for r in batches.get(tp, ())]
            if records:
                _, values, bad = fold_records(records, self.parse, self.key_of, self.table)
                if bad:
                    log.warning("undecodable_table_records", topic=self.topic, count=bad)
                if self.on_value is not None:
                    for value in values:
                        await self.on_value(value)
                async with self._changed:
                    self._changed.notify_all()
            if not self._caught_up.is_set():
                positions = {tp: await consumer.position(tp) for tp in end}
                if all(positions[tp] >= off for tp, off in end.items()):
                    self._caught_up.set()
                    log.info("table_loaded", topic=self.topic, keys=len(self.table))

    def current(self, key: str) -> M | None:
        """The latest value of ``key`` read so far (no waiting)."""
        return self.table.get(key)

    async def wait_for(self, key: str, timeout_s: float) -> M | None:
        """The value of ``key``, waiting up to ``timeout_s`` for it to appear."""
        value = self.table.get(key)
        if value is not None:
            return value
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: key in self.table), timeout=timeout_s
                )
        return self.table.get(key)

    async def stop(self) -> None:
        """Stop following the topic."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
