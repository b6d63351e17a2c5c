"""The exactly-once consume-transform-produce loop every stage runs on.

Design (details and the fencing argument in docs/architecture.md):

* ``read_committed`` consumer, manual offsets, eager rebalancing.
* One transactional producer per *assigned input partition*, with the
  transactional id ``<group>.<input topic>.<partition>``. Whoever owns a
  partition owns that id; ``InitProducerId`` on assignment fences the previous
  owner (a crashed or partitioned process) and aborts its open transaction, and
  only then is the committed offset read. This replaces KIP-447 generation
  fencing, which aiokafka lacks.
* Records are processed concurrently (bounded by ``max_in_flight``) and finish
  in any order; a :class:`~services.runtime.ledger.PartitionLedger` releases
  only the finished prefix, whose outputs and next offset go into one
  transaction. Outputs are buffered until then, so no transaction ever holds
  the output of a record whose offset it does not commit.
* A failing handler is retried with backoff, then dead-lettered in the same
  transaction as its offset: a poison record never blocks its partition.
* A failed or ambiguous commit is recovered by re-fencing and re-reading the
  committed offset: what committed is dropped from the ledger, the rest is
  produced again in a new transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import ProducerFenced
from aiokafka.partitioner import DefaultPartitioner
from google.protobuf.message import DecodeError

from services.runtime import metrics
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.dlq import build_dead_letter
from services.runtime.ledger import CommitBatch, PartitionLedger
from services.runtime.retry import PermanentError, RetryPolicy
from services.runtime.stage import Envelope, Identity, M, Output, Stage
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)


class RuntimeFatalError(RuntimeError):
    """The runner cannot go on; the process should exit and be restarted."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    """An encoded output record."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(eq=False)
class _Partition:
    tp: TopicPartition
    producer: AIOKafkaProducer
    ledger: PartitionLedger[OutRecord] = field(default_factory=PartitionLedger)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: bool = True  # owned: completions count and commits may run
    draining: bool = False  # no new records are dispatched
    failures: int = 0  # failed commits in a row
    last_offset: int = -1


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: StageRunner[Any]) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._runner._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._runner._on_assigned(list(assigned))


class StageRunner(Generic[M]):
    """Runs one :class:`Stage` against Kafka with exactly-once stage transitions."""

    def __init__(
        self,
        stage: Stage[M],
        kafka: KafkaSettings,
        settings: StageSettings,
        catalog: TopicCatalog | None = None,
    ) -> None:
        self.stage = stage
        self.kafka = kafka
        self.settings = settings
        self.catalog = catalog or default_catalog()
        self.group_id = settings.group_id or f"act-{stage.name}"
        self.input_topic = self.catalog.name(stage.input_topic, kafka.topic_prefix)
        self.dlq_topic = self.catalog.name("dlq", kafka.topic_prefix)
        self.retry = RetryPolicy(
            max_attempts=settings.max_attempts,
            initial_s=settings.backoff_initial_ms / 1000,
            max_s=settings.backoff_max_ms / 1000,
        )
        self._topic_names: dict[str, str] = {}
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever in-flight or buffered shrinks
        self._commit_now = asyncio.Event()
        self._in_flight = 0
        # Labelled metric children are resolved once: labels() is costly per message.
        self._m_consumed = metrics.CONSUMED.labels(stage=stage.name)
        self._m_committed = metrics.COMMITTED.labels(stage=stage.name)
        self._m_in_flight = metrics.IN_FLIGHT.labels(stage=stage.name)
        self._m_buffered = metrics.BUFFERED.labels(stage=stage.name)
        self._m_retries = metrics.RETRIES.labels(stage=stage.name)
        self._m_latency = metrics.HANDLER_LATENCY.labels(stage=stage.name)
        self._m_txn = metrics.TXN_LATENCY.labels(stage=stage.name)
        self._m_recoveries = metrics.RECOVERIES.labels(stage=stage.name)
        self._m_produced: dict[str, Any] = {}
        self._partitioner = DefaultPartitioner()
        self._fatal: BaseException | None = None
        self.started = asyncio.Event()
        #: Input records committed by this runner (for status and benchmarks).
        self.committed_records = 0

    # ------------------------------------------------------------------ public

    async def run(self) -> None:
        """Consume until :meth:`stop` is called; raises on a fatal error."""
        await self.stage.start()
        consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            max_poll_interval_ms=self.settings.max_poll_interval_ms,
            **self.kafka.client_kwargs(),
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe([self.input_topic], listener=_Listener(self))
        committer = asyncio.create_task(self._commit_loop(), name="act-committer")
        lag = asyncio.create_task(self._lag_loop(), name="act-lag")
        self.started.set()
        log.info(
            "stage_started", stage=self.stage.name, topic=self.input_topic, group=self.group_id
        )
        try:
            await self._fetch_loop(consumer)
        finally:
            committer.cancel()
            lag.cancel()
            await asyncio.gather(committer, lag, return_exceptions=True)
            await self._shutdown(consumer)
            await self.stage.stop()
            self._stopped.set()
        if self._fatal is not None:
            raise RuntimeFatalError(str(self._fatal)) from self._fatal

    def stop(self) -> None:
        """Ask the runner to finish in-flight work, commit it and return."""
        self._stopping.set()
        self._progress.set()

    @property
    def in_flight(self) -> int:
        """Handlers running now."""
        return self._in_flight

    # ---------------------------------------------------------------- fetching

    def _buffered(self) -> int:
        return sum(p.ledger.pending for p in self._partitions.values())

    async def _fetch_loop(self, consumer: AIOKafkaConsumer) -> None:
        s = self.settings
        while not self._stopping.is_set():
            room = s.max_in_flight - self._in_flight
            if room <= 0 or self._buffered() >= s.max_buffered:
                # Backpressure: stop fetching until a handler finishes or a
                # transaction commits. aiokafka heartbeats in the background.
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), timeout=0.5)
                continue
            batches = await consumer.getmany(
                timeout_ms=100, max_records=min(room, s.fetch_max_records)
            )
            for tp, records in batches.items():
                part = self._partitions.get(tp)
                if part is None or part.draining or not part.active:
                    continue  # revoked meanwhile: the next owner reads them again
                for record in records:
                    if record.offset <= part.last_offset:
                        continue  # re-delivered after a seek; already dispatched
                    part.last_offset = record.offset
                    part.ledger.add(record.offset)
                    self._in_flight += 1
                    self._m_consumed.inc()
                    task = asyncio.create_task(self._process(part, record))
                    part.tasks.add(task)
                    task.add_done_callback(part.tasks.discard)
            self._m_in_flight.set(self._in_flight)

    # -------------------------------------------------------------- processing

    def _topic(self, topic_id: str) -> str:
        name = self._topic_names.get(topic_id)
        if name is None:
            name = self.catalog.name(topic_id, self.kafka.topic_prefix)
            self._topic_names[topic_id] = name
        return name

    def _encode(self, outputs: Sequence[Output]) -> list[OutRecord]:
        return [
            OutRecord(
                topic=self._topic(o.topic),
                key=o.key.encode(),
                value=o.value.SerializeToString(),
                headers=[(k, v.encode()) for k, v in o.headers.items()],
            )
            for o in outputs
        ]

    async def _process(self, part: _Partition, record: ConsumerRecord[bytes, bytes]) -> None:
        started = time.perf_counter()
        try:
            outputs = await self._outcome(record)
        except asyncio.CancelledError:
            raise  # shutdown: the record stays uncommitted and is handed back
        finally:
            self._in_flight -= 1
            self._progress.set()
        self._m_latency.observe(time.perf_counter() - started)
        completed = part.active and part.ledger.complete(record.offset, outputs)
        if completed and part.ledger.done >= self.settings.commit_max_records:
            self._commit_now.set()

    async def _outcome(self, record: ConsumerRecord[bytes, bytes]) -> list[OutRecord]:
        """The encoded outputs of one record: the stage's, or one dead letter."""
        headers = {k: v for k, v in (record.headers or ())}
        identity = Identity()
        try:
            message = self.stage.input_type.FromString(record.value or b"")
        except (DecodeError, RuntimeWarning) as exc:
            return self._dead_letter(
                record, headers, identity, PermanentError(f"undecodable: {exc}"), 1
            )
        identity = self.stage.identify(message)
        # Each record runs in its own asyncio task, hence its own context copy:
        # binding here never leaks to other records and needs no unbinding.
        structlog.contextvars.bind_contextvars(task_id=identity.task_id, item_id=identity.item_id)
        attempt = 1
        while True:
            envelope = Envelope(
                message=message,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                headers=headers,
                timestamp_ms=record.timestamp,
                attempt=attempt,
            )
            try:
                async with asyncio.timeout(self.settings.handler_timeout_s):
                    outputs = await self.stage.process(envelope)
                return self._encode(outputs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.retry.should_retry(attempt, exc):
                    return self._dead_letter(record, headers, identity, exc, attempt)
                self._m_retries.inc()
                delay = self.retry.delay_s(attempt, exc)
                log.warning(
                    "handler_retry",
                    attempt=attempt,
                    error_type=type(exc).__name__,
                    delay_s=delay,
                )
                await asyncio.sleep(delay)
                attempt += 1

    def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        headers: dict[str, bytes],
        identity: Identity,
        error: BaseException,
        attempts: int,
    ) -> list[OutRecord]:
        letter = build_dead_letter(
            stage=self.stage.name,
            error=error,
            attempts=attempts,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=headers,
            identity=identity,
            raw_model_output=getattr(error, "raw_output", "") or "",
        )
        metrics.DEAD_LETTERS.labels(stage=self.stage.name, reason=type(error).__name__).inc()
        log.warning(
            "dead_letter",
            error_type=type(error).__name__,
            attempts=attempts,
            partition=record.partition,
            offset=record.offset,
            item_id=identity.item_id,
            task_id=identity.task_id,
        )
        key = identity.item_id.encode() if identity.item_id else record.key
        return [OutRecord(topic=self.dlq_topic, key=key, value=letter.SerializeToString())]

    # -------------------------------------------------------------- committing

    async def _commit_loop(self) -> None:
        interval = self.settings.commit_interval_ms / 1000
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commit_now.wait(), timeout=interval)
            self._commit_now.clear()
            parts = [p for p in self._partitions.values() if p.active and p.ledger.ready()]
            if parts:
                await asyncio.gather(*(self._commit(p) for p in parts))

    async def _commit(self, part: _Partition) -> None:
        """Commit the finished prefix of one partition (outputs + offset), or recover."""
        async with part.lock:
            while part.active:
                batch = part.ledger.peek(self.settings.commit_max_records)
                if batch is None:
                    return
                try:
                    await self._transact(part, batch)
                except ProducerFenced:
                    log.warning("partition_fenced", partition=part.tp.partition)
                    await self._lose(part)
                    return
                except Exception as exc:
                    log.warning("commit_failed", partition=part.tp.partition, error=repr(exc))
                    await self._recover(part)
                    continue
                part.ledger.pop(batch)
                self._progress.set()
                if part.ledger.ready() < self.settings.commit_max_records:
                    return

    async def _transact(self, part: _Partition, batch: CommitBatch[OutRecord]) -> None:
        started = time.perf_counter()
        producer = part.producer
        await producer.begin_transaction()
        try:
            futures = await self._send_all(producer, batch.outputs)
            if futures:
                await asyncio.gather(*futures)
            await producer.send_offsets_to_transaction({part.tp: batch.next_offset}, self.group_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), timeout=10)
            raise
        await producer.commit_transaction()
        self._m_txn.observe(time.perf_counter() - started)
        self.committed_records += batch.records
        self._m_committed.inc(batch.records)
        per_topic: dict[str, int] = {}
        for o in batch.outputs:
            per_topic[o.topic] = per_topic.get(o.topic, 0) + 1
        for name, count in per_topic.items():
            child = self._m_produced.get(name)
            if child is None:
                child = self._m_produced[name] = metrics.PRODUCED.labels(
                    stage=self.stage.name, topic=name
                )
            child.inc(count)
        self._m_buffered.set(self._buffered())

    async def _send_all(
        self, producer: AIOKafkaProducer, outputs: Sequence[OutRecord]
    ) -> list[asyncio.Future[Any]]:
        """Send outputs as record batches, one stream per output partition.

        ``send()`` per record costs tens of microseconds of event-loop time;
        building batches ourselves keeps the commit path short. Records keep
        their order within each output partition, and the partition is the
        default partitioner's (murmur2 of the key), as with ``send()``.
        """
        groups: dict[tuple[str, int], list[OutRecord]] = {}
        partitions: dict[str, list[int]] = {}
        for o in outputs:
            parts = partitions.get(o.topic)
            if parts is None:
                parts = partitions[o.topic] = sorted(await producer.partitions_for(o.topic))
            p = self._partitioner(o.key, parts, parts)
            groups.setdefault((o.topic, p), []).append(o)
        futures: list[asyncio.Future[Any]] = []
        for (topic, p), records in groups.items():
            builder = producer.create_batch()
            for r in records:
                if builder.append(key=r.key, value=r.value, timestamp=None, headers=r.headers):
                    continue
                if builder.record_count() == 0:
                    raise PermanentError(
                        f"output record of {len(r.value)} bytes exceeds the batch size"
                    )
                futures.append(await producer.send_batch(builder, topic, partition=p))
                builder = producer.create_batch()
                if not builder.append(key=r.key, value=r.value, timestamp=None, headers=r.headers):
                    raise PermanentError(
                        f"output record of {len(r.value)} bytes exceeds the batch size"
                    )
            if builder.record_count():
                futures.append(await producer.send_batch(builder, topic, partition=p))
        return futures

    async def _new_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        """A started transactional producer for ``tp`` that has fenced every predecessor."""
        producer = AIOKafkaProducer(
            transactional_id=f"{self.group_id}.{tp.topic}.{tp.partition}",
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
            **self.kafka.client_kwargs(),
        )
        try:
            await producer.start()
            # begin_transaction waits for InitProducerId, which bumps the epoch
            # of this transactional id and completes (aborts) any transaction
            # the previous owner left open. Only after that is the committed
            # offset final.
            await producer.begin_transaction()
            await producer.abort_transaction()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _committed(self, tp: TopicPartition) -> int | None:
        assert self._consumer is not None
        offset = await self._consumer.committed(tp)
        return None if offset is None or offset < 0 else int(offset)

    async def _recover(self, part: _Partition) -> None:
        """After a failed transaction: re-fence, then drop what did commit."""
        self._m_recoveries.inc()
        for attempt in range(1, self.settings.recovery_attempts + 1):
            if not part.active:
                return
            with contextlib.suppress(Exception):
                await part.producer.stop()
            try:
                part.producer = await self._new_producer(part.tp)
                committed = await self._committed(part.tp)
            except Exception as exc:
                delay = self.retry.delay_s(min(attempt, 6))
                log.warning(
                    "recovery_retry", partition=part.tp.partition, attempt=attempt, error=repr(exc)
                )
                await asyncio.sleep(delay)
                continue
            if committed is not None:
                dropped = part.ledger.drop_below(committed)
                if dropped:
                    log.info("recovered_committed", partition=part.tp.partition, records=dropped)
            return
        self._fatal = RuntimeFatalError(f"cannot recover partition {part.tp}")
        self.stop()

    async def _lose(self, part: _Partition) -> None:
        """Another owner fenced us: forget the partition's work without committing."""
        part.active = False
        for task in list(part.tasks):
            task.cancel()
        part.ledger.clear()
        self._partitions.pop(part.tp, None)
        with contextlib.suppress(Exception):
            await part.producer.stop()
        self._progress.set()

    # --------------------------------------------------------------- rebalance

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None

        async def take(tp: TopicPartition) -> None:
            if tp in self._partitions:
                return
            for attempt in range(1, self.settings.recovery_attempts + 1):
                try:
                    producer = await self._new_producer(tp)
                    committed = await self._committed(tp)
                    break
                except Exception as exc:
                    log.warning(
                        "assign_retry", partition=tp.partition, attempt=attempt, error=repr(exc)
                    )
                    await asyncio.sleep(self.retry.delay_s(min(attempt, 6)))
            else:
                self._fatal = RuntimeFatalError(f"cannot take partition {tp}")
                self.stop()
                return
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
            self._partitions[tp] = _Partition(
                tp=tp, producer=producer, last_offset=(committed or 0) - 1
            )

        await asyncio.gather(*(take(tp) for tp in assigned))
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))

    async def _release(self, part: _Partition, drain_s: float) -> None:
        """Stop a partition: let its work finish (bounded), commit, hand back the rest."""
        part.draining = True
        if part.tasks and drain_s > 0:
            await asyncio.wait(list(part.tasks), timeout=drain_s)
        for task in list(part.tasks):
            task.cancel()
        if part.tasks:
            await asyncio.gather(*part.tasks, return_exceptions=True)
        try:
            await self._commit(part)
        finally:
            part.active = False
            part.ledger.clear()
            self._partitions.pop(part.tp, None)
            with contextlib.suppress(Exception):
                await part.producer.stop()
            self._progress.set()

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        parts = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        drain = 0.0 if self._stopping.is_set() else min(self.settings.drain_timeout_s, 5.0)
        await asyncio.gather(*(self._release(p, drain) for p in parts))
        if parts:
            log.info("partitions_revoked", partitions=sorted(p.tp.partition for p in parts))

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        parts = list(self._partitions.values())
        for p in parts:
            p.draining = True
        pending = [t for p in parts for t in p.tasks]
        if pending and self.settings.drain_timeout_s > 0:
            log.info("draining", in_flight=len(pending))
            await asyncio.wait(pending, timeout=self.settings.drain_timeout_s)
        await asyncio.gather(*(self._release(p, 0.0) for p in parts), return_exceptions=True)
        with contextlib.suppress(Exception):
            await consumer.stop()
        log.info("stage_stopped", stage=self.stage.name)

    async def _lag_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            await asyncio.sleep(5)
            for tp in list(self._partitions):
                high = consumer.highwater(tp)
                if high is None:
                    continue
                with contextlib.suppress(Exception):
                    position = await consumer.position(tp)
                    metrics.LAG.labels(stage=self.stage.name, partition=str(tp.partition)).set(
                        max(0, high - position)
                    )
