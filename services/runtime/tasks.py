"""Task definitions for the services: the latest Task per id.

Tasks are published once (``act task create``) to the compacted ``tasks``
topic, keyed by task id; every item references its task by id. A service
keeps a :class:`TaskRegistry` that reads the topic from the beginning and
stays current, so stages look tasks up in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Protocol

import structlog
from act.v1 import task_pb2
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import DecodeError

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.retry import RetryableError
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)


#: Called with every task version read from the topic, in order (e.g. the
#: review gateway's upsert into its database).
TaskListener = Callable[[task_pb2.Task], Awaitable[None]]


class TaskNotFoundError(RetryableError):
    """No task with this id (yet): retried, then dead-lettered by the runtime."""


class TaskSource(Protocol):
    """Where stages get task definitions from."""

    async def get(self, task_id: str) -> task_pb2.Task:
        """The task with this id, or :class:`TaskNotFoundError`."""
        ...


def fold_tasks(
    records: Iterable[tuple[bytes | None, bytes | None]],
    tasks: dict[str, task_pb2.Task] | None = None,
) -> tuple[dict[str, task_pb2.Task], int]:
    """Apply (key, value) records of the tasks topic in order (pure).

    A tombstone (no value) deletes the task. Returns the tasks by id and the
    number of undecodable records skipped.
    """
    tasks = {} if tasks is None else tasks
    bad = 0
    for key, value in records:
        name = key.decode("utf-8", "replace") if key is not None else ""
        if value is None:
            tasks.pop(name, None)
            continue
        try:
            task = task_pb2.Task.FromString(value)
        except DecodeError:
            bad += 1
            continue
        tasks[task.task_id or name] = task
    return tasks, bad


class StaticTaskSource:
    """A fixed set of tasks (tests, benchmarks, single-task deployments)."""

    def __init__(self, tasks: Iterable[task_pb2.Task] | Mapping[str, task_pb2.Task]) -> None:
        values: Iterable[task_pb2.Task] = (
            list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)
        )
        self._tasks: dict[str, task_pb2.Task] = {t.task_id: t for t in values}

    async def get(self, task_id: str) -> task_pb2.Task:
        """The task with this id, or :class:`TaskNotFoundError`."""
        try:
            return self._tasks[task_id]
        except KeyError:
            raise TaskNotFoundError(f"unknown task {task_id!r}") from None


class TaskRegistry:
    """Follows the compacted tasks topic; lookups are in memory.

    ``get`` waits up to ``wait_s`` for a task it has not seen, since items can
    race ahead of their task's definition; after that the caller's retry
    policy applies.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        wait_s: float = 5.0,
        *,
        on_task: TaskListener | None = None,
        catalog: TopicCatalog | None = None,
        retry_s: float = 2.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.kafka = kafka
        self.topic = (catalog or default_catalog()).name("tasks", kafka.topic_prefix)
        self.wait_s = wait_s
        self.on_task = on_task
        self.retry_s = retry_s
        self.start_timeout_s = start_timeout_s
        self._tasks: dict[str, task_pb2.Task] = {}
        self._changed = asyncio.Condition()
        self._caught_up = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the topic to its current end, then keep following it.

        Raises when the topic does not exist (run ``act topics ensure``) or is
        not read to its end within ``start_timeout_s``.
        """
        consumer = await self._open()
        self._reader = asyncio.create_task(self._follow_forever(consumer), name="act-tasks")
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
        """Follow the topic; after an error, reconnect and read it again from the
        beginning (it is small, compacted, and applying a task twice is harmless),
        so the registry never silently stops updating."""
        current: AIOKafkaConsumer | None = consumer
        while True:
            try:
                if current is None:
                    current = await self._open()  # stops its consumer if it fails
                await self._follow(current)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("task_registry_retry", topic=self.topic, error=type(exc).__name__)
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
                _, bad = fold_tasks(records, self._tasks)
                if bad:
                    log.warning("undecodable_task_records", count=bad)
                if self.on_task is not None:
                    for task in _decodable(records):
                        await self.on_task(task)
                async with self._changed:
                    self._changed.notify_all()
            if not self._caught_up.is_set():
                positions = {tp: await consumer.position(tp) for tp in end}
                if all(positions[tp] >= off for tp, off in end.items()):
                    self._caught_up.set()
                    log.info("tasks_loaded", tasks=len(self._tasks))

    async def get(self, task_id: str) -> task_pb2.Task:
        """The task with this id; waits up to ``wait_s`` for it to appear."""
        task = self._tasks.get(task_id)
        if task is not None:
            return task
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: task_id in self._tasks), timeout=self.wait_s
                )
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"unknown task {task_id!r}")
        return task

    async def stop(self) -> None:
        """Stop following the topic."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None


def _decodable(records: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[task_pb2.Task]:
    """The tasks among (key, value) records, in order; tombstones and undecodable
    records are skipped (a listener keeps what it was told: queued items of a
    retired task still need its label set)."""
    for _, value in records:
        if not value:
            continue
        try:
            yield task_pb2.Task.FromString(value)
        except DecodeError:
            continue
