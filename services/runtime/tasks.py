"""Task definitions for the services: the latest Task per id.

Tasks are published once (``act task create``) to the compacted ``tasks``
topic, keyed by task id; every item references its task by id. A service
keeps a :class:`TaskRegistry` (a :class:`~services.runtime.table.CompactedTable`)
that reads the topic from the beginning and stays current, so stages look
tasks up in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from act.v1 import task_pb2

from services.runtime.config import KafkaSettings
from services.runtime.retry import RetryableError
from services.runtime.table import CompactedTable, fold_records
from services.runtime.topics import TopicCatalog

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
    table, _, bad = fold_records(records, task_pb2.Task.FromString, _task_id, tasks)
    return table, bad


def _task_id(task: task_pb2.Task) -> str:
    return str(task.task_id)


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


class TaskRegistry(CompactedTable[task_pb2.Task]):
    """Follows the compacted tasks topic; lookups are in memory.

    ``get`` waits up to ``wait_s`` for a task it has not seen, since items can
    race ahead of their task's definition; after that the caller's retry
    policy applies. ``on_task`` sees every task version read, in order
    (tombstones and undecodable records are skipped: a listener keeps what it
    was told, since queued items of a retired task still need its label set).
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
        super().__init__(
            kafka,
            "tasks",
            task_pb2.Task.FromString,
            _task_id,
            on_value=on_task,
            catalog=catalog,
            retry_s=retry_s,
            start_timeout_s=start_timeout_s,
        )
        self.wait_s = wait_s

    async def get(self, task_id: str) -> task_pb2.Task:
        """The task with this id; waits up to ``wait_s`` for it to appear."""
        task = await self.wait_for(task_id, self.wait_s)
        if task is None:
            raise TaskNotFoundError(f"unknown task {task_id!r}")
        return task
