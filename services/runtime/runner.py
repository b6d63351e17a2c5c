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
* The stage hears of its partitions (``on_assigned`` after fencing, seek and
  changelog restore, before any dispatch; ``on_revoked`` after release), and
  a stage with a ``changelog_topic`` has its per-partition state written in
  each partition's transactions and restored on assignment.

Who does what: :class:`StageRunner` (here) runs the consumer, the fetch loop
and dispatch, rebalances and the process lifecycle;
:class:`~services.runtime.outcome.RecordHandler` turns one record into its
outputs or a dead letter; :class:`~services.runtime.partitions.PartitionCommitter`
owns the assigned partitions, their producers and their transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Generic

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from services.runtime import kafka_clients, metrics
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.heartbeat import HeartbeatPublisher, Load
from services.runtime.outcome import RecordHandler
from services.runtime.partitions import Partition, PartitionCommitter
from services.runtime.retry import RetryPolicy
from services.runtime.stage import M, Stage
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)


class RuntimeFatalError(RuntimeError):
    """The runner cannot go on; the process should exit and be restarted."""


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
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever in-flight or buffered shrinks
        self._in_flight = 0
        self._fatal: BaseException | None = None
        self._handler = handler = RecordHandler(
            stage,
            catalog=self.catalog,
            topic_prefix=kafka.topic_prefix,
            dlq_topic=self.dlq_topic,
            handler_timeout_s=settings.handler_timeout_s,
            retry=self.retry,
        )
        changelog = stage.changelog_topic
        self._committer = PartitionCommitter(
            stage=stage,
            group_id=self.group_id,
            kafka=kafka,
            settings=settings,
            retry=self.retry,
            progress=self._progress,
            on_fatal=self._fail,
            encode=handler.encode,
            changelog_topic=(
                None if changelog is None else self.catalog.name(changelog, kafka.topic_prefix)
            ),
        )
        # The fetch loop and the handlers use these once per record or batch:
        # they are bound here so the hot path looks nothing up through the
        # committer or the handler.
        self._partitions = self._committer.partitions
        self._buffered = self._committer.buffered
        self._commit_now = self._committer.commit_now
        self._outcome = handler.outcome
        # Labelled metric children are resolved once: labels() is costly per message.
        self._m_consumed = metrics.CONSUMED.labels(stage=stage.name)
        self._m_in_flight = metrics.IN_FLIGHT.labels(stage=stage.name)
        self._m_latency = metrics.HANDLER_LATENCY.labels(stage=stage.name)
        self.started = asyncio.Event()

    # ------------------------------------------------------------------ public

    async def run(self) -> None:
        """Consume until :meth:`stop` is called; raises on a fatal error."""
        await self.stage.start()
        consumer = kafka_clients.consumer(
            self.kafka,
            group_id=self.group_id,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            max_poll_interval_ms=self.settings.max_poll_interval_ms,
        )
        self._consumer = consumer
        self._committer.attach(consumer)
        try:
            await consumer.start()
            consumer.subscribe([self.input_topic], listener=_Listener(self))
        except BaseException:
            # The start failed or was cancelled (SIGTERM while starting): undo
            # what started; nothing was consumed, so nothing is committed.
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await self.stage.stop()
            raise
        committer = asyncio.create_task(self._committer.commit_loop(), name="act-committer")
        lag = asyncio.create_task(self._lag_loop(), name="act-lag")
        heartbeat = self._heartbeat()
        self.started.set()
        log.info(
            "stage_started", stage=self.stage.name, topic=self.input_topic, group=self.group_id
        )
        try:
            await self._fetch_loop(consumer)
        finally:
            # The commit loop finishes the transactions it runs (cancelling one
            # could commit it unbeknown to the ledger); only a hung one is cancelled.
            self._committer.stop_loop()
            lag.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(committer), timeout=30)
            committer.cancel()
            await asyncio.gather(committer, lag, return_exceptions=True)
            await self._shutdown(consumer)
            if heartbeat is not None:
                await heartbeat.stop()
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

    @property
    def retries(self) -> int:
        """Handler attempts that failed and were retried by this runner."""
        return self._handler.retries

    def load(self) -> Load:
        """What this replica's heartbeat reports now."""
        return Load(
            in_flight=self._in_flight,
            retries=self._handler.retries,
            committed_records=self._committer.committed_records,
            assigned_partitions=len(self._partitions),
        )

    @property
    def committed_records(self) -> int:
        """Input records committed by this runner (for status and benchmarks)."""
        return self._committer.committed_records

    # ---------------------------------------------------------------- fetching

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

    async def _process(self, part: Partition, record: ConsumerRecord[bytes, bytes]) -> None:
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

    # ---------------------------------------------------- rebalance, shutdown

    def _heartbeat(self) -> HeartbeatPublisher | None:
        """Start this replica's heartbeats (None when ``status_heartbeat_s`` is 0)."""
        if self.settings.status_heartbeat_s <= 0:
            return None
        publisher = HeartbeatPublisher(
            self.kafka,
            self.catalog.name("stage_heartbeats", self.kafka.topic_prefix),
            self.stage.name,
            self.load,
            self.settings.status_heartbeat_s,
        )
        publisher.start()
        return publisher

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        await asyncio.gather(*(self._committer.assign(tp) for tp in assigned))
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        parts = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        drain = 0.0 if self._stopping.is_set() else min(self.settings.drain_timeout_s, 5.0)
        await asyncio.gather(*(self._committer.release(p, drain) for p in parts))
        if parts:
            log.info("partitions_revoked", partitions=sorted(p.tp.partition for p in parts))

    def _fail(self, reason: str) -> None:
        """A partition can be neither taken nor recovered: stop, then raise from run()."""
        self._fatal = RuntimeFatalError(reason)
        self.stop()

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        parts = list(self._partitions.values())
        for p in parts:
            p.draining = True
        pending = [t for p in parts for t in p.tasks]
        if pending and self.settings.drain_timeout_s > 0:
            log.info("draining", in_flight=len(pending))
            await asyncio.wait(pending, timeout=self.settings.drain_timeout_s)
        await asyncio.gather(
            *(self._committer.release(p, 0.0) for p in parts), return_exceptions=True
        )
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await self._committer.close()
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
