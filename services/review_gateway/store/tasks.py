"""Task definitions (label sets, instructions) the gateway needs to serve an item."""

from __future__ import annotations

from typing import Any

from act.v1 import task_pb2
from sqlalchemy import select

from services.review_gateway import schema as s
from services.review_gateway.store.base import StoreCore, now_us


class Tasks:
    """The ``tasks`` table: one row per task id, last definition wins."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def upsert_task(self, task: task_pb2.Task, *, only_if_missing: bool = False) -> None:
        """Remember a task's label set (from act.tasks or an embedded snapshot)."""
        if not task.task_id or len(task.labels) == 0:
            return
        stmt: Any = self._core.dialect_insert(s.tasks).values(
            task_id=task.task_id,
            num_labels=len(task.labels),
            task=task.SerializeToString(),
            updated_at_us=now_us(),
        )
        if only_if_missing:
            # A snapshot embedded in a request must not overwrite a newer act.tasks record.
            stmt = stmt.on_conflict_do_nothing()
        else:
            stmt = stmt.on_conflict_do_update(
                index_elements=[s.tasks.c.task_id],
                set_={k: stmt.excluded[k] for k in ("num_labels", "task", "updated_at_us")},
            )
        async with self._core.tx() as conn:
            await conn.execute(stmt)
        # Items of a task that was unknown until now become leasable.
        self._core.notify_queue()

    async def get_task(self, task_id: str) -> task_pb2.Task | None:
        """The stored task, or None."""
        async with self._core.reader.connect() as conn:
            raw = (
                await conn.execute(select(s.tasks.c.task).where(s.tasks.c.task_id == task_id))
            ).scalar_one_or_none()
        return None if raw is None else task_pb2.Task.FromString(raw)
