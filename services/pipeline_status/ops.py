"""The operations behind ``GetStatus``: stage offsets, task progress, queue, budget.

:class:`StatusOps` is plain (no gRPC): :mod:`.api` maps calls onto it. It is
built from its clients (:meth:`StatusOps.open` builds them from settings), so
a process that already has a task registry or a review store can pass its own.
"""

from __future__ import annotations

from act.v1 import api_pb2, task_pb2

from services.core.sampling import budget_count
from services.pipeline_status.progress import ProgressFollower, TaskCounts, stage_loads
from services.pipeline_status.settings import PipelineStatusSettings
from services.pipeline_status.stages import collect_status
from services.review_gateway.db import create_engine
from services.review_gateway.errors import NotFound
from services.review_gateway.store import ReviewStore
from services.runtime.config import KafkaSettings
from services.runtime.tasks import TaskNotFoundError, TaskRegistry, TaskSource
from services.runtime.topics import TopicCatalog


class StatusOps:
    """Answers GetStatus from Kafka (offsets and the read model), the task
    definitions and, when given, the review gateway's database (read only)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        progress: ProgressFollower,
        tasks: TaskSource,
        review: ReviewStore | None = None,
        *,
        group_prefix: str = "",
        catalog: TopicCatalog | None = None,
        sync_timeout_s: float = 5.0,
    ) -> None:
        self.kafka = kafka
        self.progress = progress
        self.tasks = tasks
        self.review = review
        self.group_prefix = group_prefix
        self.catalog = catalog
        self.sync_timeout_s = sync_timeout_s
        #: What :meth:`open` started and :meth:`close` stops.
        self._owned: list[TaskRegistry | ProgressFollower | ReviewStore] = []

    @classmethod
    async def open(
        cls,
        settings: PipelineStatusSettings,
        kafka: KafkaSettings,
        *,
        catalog: TopicCatalog | None = None,
        tasks: TaskSource | None = None,
    ) -> StatusOps:
        """Build and start every client from settings (close with :meth:`close`).

        ``tasks``: a task source the process already follows (a started
        registry is shared, not started or stopped here; its ``wait_s`` then
        bounds how long an undefined task holds a call); default: a registry
        of its own that waits for no task.
        """
        # wait_s=0: a task not defined yet is reported as unknown at once
        # rather than holding the call.
        registry: TaskRegistry | None = None
        if tasks is None:
            registry = tasks = TaskRegistry(kafka, wait_s=0.0, catalog=catalog)
        progress = ProgressFollower(kafka, catalog=catalog)
        review = None
        if settings.review_database_url:
            engine = create_engine(
                settings.review_database_url, schema=settings.review_database_schema, pool_size=2
            )
            review = ReviewStore(engine, schema=settings.review_database_schema, hot_pool_size=1)
        ops = cls(
            kafka,
            progress,
            tasks,
            review,
            group_prefix=settings.group_prefix,
            catalog=catalog,
            sync_timeout_s=settings.sync_timeout_s,
        )
        try:
            if registry is not None:
                await registry.start()
                ops._owned.append(registry)
            await progress.start()
            ops._owned.append(progress)
        except BaseException:
            await ops.close()
            if review is not None:
                await review.close()
            raise
        if review is not None:
            ops._owned.append(review)
        return ops

    async def close(self) -> None:
        """Stop what :meth:`open` started."""
        while self._owned:
            part = self._owned.pop()
            if isinstance(part, ReviewStore):
                await part.close()
            else:
                await part.stop()

    async def get_status(self, request: api_pb2.GetStatusRequest) -> api_pb2.PipelineStatus:
        """Stages from offsets, then every task (or ``request.task_id``) from the read model."""
        caught_up = await self.progress.sync(self.sync_timeout_s)
        report = await collect_status(
            self.kafka, catalog=self.catalog, group_prefix=self.group_prefix
        )
        counts = self.progress.progress
        status = report.to_proto(counts.dead_letters, include_partitions=request.include_partitions)
        loads = stage_loads(counts.replicas, report.observed_at)
        for stage in status.stages:
            load = loads.get(stage.stage)
            if load is not None:
                stage.in_flight, stage.retries = load.in_flight, load.retries
                stage.live_replicas = load.live_replicas
        status.tasks_caught_up = caught_up
        status.review_queue_known = self.review is not None
        task_ids = [request.task_id] if request.task_id else sorted(counts.tasks)
        for task_id in task_ids:
            task = counts.tasks.get(task_id) or TaskCounts()
            status.tasks.append(await self._task_progress(task_id, task))
        return status

    async def _task_progress(self, task_id: str, counts: TaskCounts) -> api_pb2.TaskProgress:
        out = api_pb2.TaskProgress(
            task_id=task_id,
            ingested=counts.ingested,
            annotated=counts.annotated,
            critiqued=counts.critiqued,
            sampled_for_review=counts.sampled_for_review,
            machine_final=counts.machine_final,
            reviewed=counts.reviewed,
            finalized=counts.finalized,
            budget_spent=counts.sampled_for_review,
            dead_letters=counts.dead_letters,
        )
        definition = await self._task(task_id)
        if definition is not None:
            out.task_known = True
            out.budget_fraction = definition.budget.fraction
            out.budget_hard_cap = definition.budget.hard_cap
            out.budget = review_budget(
                definition.budget.fraction, definition.budget.hard_cap, counts.ingested
            )
        if self.review is not None:
            try:
                stats = await self.review.task_stats(task_id)
                out.review_pending, out.review_leased = stats.pending, stats.leased
            except NotFound:
                pass  # the gateway never saw the task: nothing is queued
            out.review_queue_depth = out.review_pending + out.review_leased
        fit = counts.latest_fit
        if fit is not None:
            latest = out.latest_fit
            latest.fit_id = fit.fit_id
            latest.state = fit.state  # type: ignore[assignment]
            latest.metrics.update(fit.metrics)
            if fit.updated_at is not None:
                latest.updated_at.FromDatetime(fit.updated_at)
            if fit.finished_at is not None:
                latest.finished_at.FromDatetime(fit.finished_at)
        return out

    async def _task(self, task_id: str) -> task_pb2.Task | None:
        try:
            return await self.tasks.get(task_id)
        except TaskNotFoundError:
            return None


def review_budget(fraction: float, hard_cap: int, ingested: int) -> int:
    """Reviews the budget allows after ``ingested`` items: ``B = floor(b * N)``,
    capped by the task's hard cap (0 = none)."""
    budget = budget_count(min(max(fraction, 0.0), 1.0), ingested)
    return min(budget, hard_cap) if hard_cap > 0 else budget
