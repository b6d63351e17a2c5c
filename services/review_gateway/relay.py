"""The transactional outbox relay: database rows -> ``act.labels``, exactly once.

Why an outbox
-------------
A submission must change the database (review, queue entry, lease) and
publish a FinalLabel. Kafka and SQL cannot share a transaction, so
:meth:`ReviewStore.submit` writes the FinalLabel as an ``outbox`` row in the
*same* database transaction as the review. Once that commits, the label is
durable whatever happens to the process; this relay moves it to Kafka later.
A gateway that dies between the database commit and the send leaves the row
unsent, and the next relay (after a restart, or on another replica) sends it.

Publishing without duplicates
-----------------------------
The naive relay (send, then mark the row sent) has an at-least-once window: a
crash after the Kafka write but before the mark re-sends the row. We close it
with a *marker stored inside the Kafka transaction*:

1. The relay owns a fixed transactional id
   (``<group>.outbox.<labels topic>``). Starting its producer
   (``InitProducerId``) fences every earlier incarnation and completes or aborts
   the transaction that incarnation left open, so afterwards Kafka's view is
   final: each earlier batch is either fully committed or fully aborted.
2. Each batch gets a fresh, increasing number ``b``. The relay tags the rows it
   claims with ``b`` in the database, then in ONE Kafka transaction produces
   the rows and commits the offset ``b`` for a private marker group
   (``send_offsets_to_transaction`` on partition 0 of the labels topic; nobody
   consumes with that group). Records and marker commit or abort together.
3. After the commit it marks the rows sent (``sent_at``), and only then starts
   the next batch. So at any moment at most one committed batch (the last
   one) can still be unmarked.
4. On start, after step 1, the relay reads the marker group's committed offset
   ``m`` and marks every row tagged ``m`` as sent ("recovery"). Those rows are
   exactly the last committed batch; rows tagged with an aborted batch number
   stay unsent and are claimed again under a new number.

Hence every outbox row is committed to the topic exactly once, as long as one
relay runs at a time. Multiple gateway replicas elect one relay with a
PostgreSQL advisory lock (SQLite is single-replica); the transactional id also
fences a relay that lost the lock but has not noticed yet.

Remaining windows (double faults), where a FinalLabel can appear twice:

* a fenced "zombie" relay rewrites the batch tag of rows that the new leader
  has already published, and the new leader then crashes before marking them;
* the marker group's offset expires (``offsets.retention.minutes``, 7 days by
  default) while a crashed relay stays down with an unmarked batch;
* the group coordinator has not yet applied a just-completed transaction when
  recovery reads the marker (the same assumption the StageRunner makes about
  committed offsets after fencing).

Consumers therefore still dedupe, and can: every item has at most one human
FinalLabel (one queue entry per (task_id, item_id), one review per entry), the
records are keyed by item_id and carry ``review_id``, and a repeat is
byte-identical. The trainer keeps the first FinalLabel per (task_id, item_id).
Ordering between items is not guaranteed (nor needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review_gateway import metrics
from services.review_gateway.errors import describe_error
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import OutboxRow, ReviewStore
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)

MARKER_METADATA = "act-review-gateway-outbox"


class LeadershipLost(RuntimeError):
    """The relay's advisory-lock connection went away; another replica may lead."""


class OutboxRelay:
    """Publishes unsent outbox rows to Kafka (see the module documentation)."""

    def __init__(
        self,
        store: ReviewStore,
        kafka: KafkaSettings,
        settings: GatewaySettings,
        catalog: TopicCatalog | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        self.settings = settings
        self.catalog = catalog or default_catalog()
        group = settings.group_id or "act-review-gateway"
        labels_topic = self.catalog.name("labels", kafka.topic_prefix)
        self.transactional_id = f"{group}.outbox.{labels_topic}"
        self.marker_group = f"{group}.outbox-marker.{labels_topic}"
        self.marker_tp = TopicPartition(labels_topic, 0)
        self.lock_key = int.from_bytes(
            hashlib.sha256(self.transactional_id.encode()).digest()[:8], "big", signed=True
        )
        self._topics: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._last_batch = 0
        #: Set after each published batch (tests and graceful stop wait on it).
        self.published = asyncio.Event()
        #: True while this instance is the relay leader.
        self.leading = False
        self._lock_conn: AsyncConnection | None = None

    # -------------------------------------------------------------- public

    async def run(self) -> None:
        """Relay until :meth:`stop`; survives broker and database outages."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                async with self._leadership():
                    backoff = 0.5
                    await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_relay_restart", error=describe_error(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stopping.wait()
                backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        """Finish the batch in progress and return from :meth:`run`."""
        self._stopping.set()

    # ---------------------------------------------------------- leadership

    @contextlib.asynccontextmanager
    async def _leadership(self) -> AsyncIterator[None]:
        """Hold the relay lock while the body runs (PostgreSQL advisory lock; SQLite: always).

        Waits until the lock is free; the body is skipped when :meth:`stop` is
        called meanwhile.
        """
        if self.store.sqlite:
            self._set_leading(True)
            try:
                yield
            finally:
                self._set_leading(False)
            return
        async with self.store.engine.connect() as conn:
            got = False
            while not got:
                got = bool(
                    (
                        await conn.execute(
                            text("SELECT pg_try_advisory_lock(:k)"), {"k": self.lock_key}
                        )
                    ).scalar_one()
                )
                await conn.commit()
                if not got:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2.0):
                            await self._stopping.wait()
                    if self._stopping.is_set():
                        break
            self._lock_conn = conn if got else None
            self._set_leading(got)
            try:
                yield
            finally:
                self._set_leading(False)
                self._lock_conn = None
                if got:
                    with contextlib.suppress(Exception):
                        await conn.execute(
                            text("SELECT pg_advisory_unlock(:k)"), {"k": self.lock_key}
                        )
                        await conn.commit()

    def _set_leading(self, leading: bool) -> None:
        if leading and not self.leading:
            log.info("outbox_relay_leader", transactional_id=self.transactional_id)
        self.leading = leading
        metrics.RELAY_LEADER.set(1 if leading else 0)

    async def _check_leadership(self) -> None:
        if self.store.sqlite:
            return
        conn = self._lock_conn
        if conn is None:
            raise LeadershipLost("not the relay leader")
        try:
            await conn.execute(text("SELECT 1"))
            await conn.commit()
        except Exception as exc:
            raise LeadershipLost("advisory lock connection lost") from exc

    # ---------------------------------------------------------------- kafka

    def _topic(self, topic_id: str) -> str:
        name = self._topics.get(topic_id)
        if name is None:
            name = self._topics[topic_id] = self.catalog.name(topic_id, self.kafka.topic_prefix)
        return name

    async def _new_producer(self) -> AIOKafkaProducer:
        # Fences earlier incarnations and resolves their open transaction
        # before we read the marker.
        return await kafka_clients.fenced_transactional_producer(
            self.kafka,
            self.transactional_id,
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
        )

    async def _read_marker(self) -> int | None:
        admin = kafka_clients.admin_client(self.kafka)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                self.marker_group, partitions=[self.marker_tp]
            )
        finally:
            await admin.close()
        found = offsets.get(self.marker_tp)
        if found is None or found.offset < 0:
            return None
        return int(found.offset)

    async def _recover(self) -> None:
        marker = await self._read_marker()
        if marker is None:
            return
        self._last_batch = max(self._last_batch, marker)
        recovered = await self.store.outbox_mark_batch_sent(marker)
        if recovered:
            metrics.RECOVERED.inc(recovered)
            log.warning("outbox_recovered", batch=marker, rows=recovered)

    def _next_batch(self) -> int:
        self._last_batch = max(self._last_batch + 1, time.time_ns() // 1000)
        return self._last_batch

    # ----------------------------------------------------------------- loop

    async def _lead(self) -> None:
        if not self.leading or self._stopping.is_set():
            return
        producer = await self._new_producer()
        try:
            await self._recover()
            idle_checks = 0
            while not self._stopping.is_set():
                sent = await self.publish_once(producer)
                if sent:
                    idle_checks = 0
                    continue
                idle_checks += 1
                if idle_checks % 25 == 0:
                    await self._check_leadership()
                    metrics.OUTBOX_UNSENT.set(await self.store.outbox_unsent())
                self.store.outbox_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.outbox_poll_interval_s):
                        await self.store.outbox_changed.wait()
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def publish_once(self, producer: AIOKafkaProducer) -> int:
        """Claim, publish and mark one batch; returns the number of rows."""
        batch = self._next_batch()
        rows = await self.store.outbox_claim(batch, self.settings.outbox_batch_size)
        if not rows:
            return 0
        await self._publish(producer, batch, rows)
        await self._mark_sent(rows, batch)
        metrics.PUBLISHED.inc(len(rows))
        self.published.set()
        return len(rows)

    async def _publish(self, producer: AIOKafkaProducer, batch: int, rows: list[OutboxRow]) -> None:
        await producer.begin_transaction()
        try:
            futures = [
                await producer.send(
                    self._topic(row.topic),
                    row.value,
                    key=row.key.encode(),
                    headers=[
                        ("act-outbox-id", str(row.id).encode()),
                        ("act-outbox-batch", str(batch).encode()),
                    ],
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            await producer.send_offsets_to_transaction(
                {self.marker_tp: (batch, MARKER_METADATA)}, self.marker_group
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise
        # An error here is ambiguous (committed or not); the caller restarts
        # the relay, whose recovery reads the marker and knows.
        await producer.commit_transaction()

    async def _mark_sent(self, rows: list[OutboxRow], batch: int) -> None:
        await self.store.outbox_mark_sent([row.id for row in rows], batch)
