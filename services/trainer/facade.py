"""What the trainer's edges may do: add a label, start, read, list and cancel fits.

The Kafka stage and the gRPC servicer talk to :class:`TrainerFacade`, never to
the store or the fit queue directly, so the rules (label deduplication,
automatic fits, config defaults from the task) live in one place. Blocking
store and queue calls run in worker threads.
"""

from __future__ import annotations

import asyncio

from act.v1 import review_pb2, training_pb2

from services.runtime.tasks import TaskSource
from services.trainer.fitqueue import FitQueue
from services.trainer.fitting import resolve_config
from services.trainer.settings import TrainerSettings
from services.trainer.store import TrainerStore


class TrainerFacade:
    """The trainer's operations over its store, fit queue and (optional) task source."""

    def __init__(
        self,
        store: TrainerStore,
        fits: FitQueue,
        settings: TrainerSettings,
        tasks: TaskSource | None = None,
    ) -> None:
        self.store = store
        self.fits = fits
        self.settings = settings
        self.tasks = tasks

    async def add_label(self, label: review_pb2.FinalLabel) -> None:
        """Upsert a final label (a repeat counts once); queue an automatic fit when due."""
        result = await asyncio.to_thread(self.store.upsert_label, label)
        threshold = self.settings.min_new_labels
        if (
            result.inserted
            and threshold > 0
            and self.store.labels_since_last_fit(label.task_id) >= threshold
        ):
            config = await self.default_config(label.task_id)
            await asyncio.to_thread(self.fits.maybe_auto_fit, label.task_id, config)

    async def task_info(self, task_id: str) -> tuple[int | None, int | None]:
        """(number of classes, modality) of a task when the task source knows it."""
        if self.tasks is None:
            return None, None
        try:
            task = await self.tasks.get(task_id)
        except Exception:  # unknown task: fall back to what the labels show
            return None, None
        return (len(task.labels) or None), int(task.modality)

    async def resolve_config(
        self, task_id: str, config: training_pb2.FitConfig
    ) -> training_pb2.FitConfig:
        """The config with every default filled for this task; KeyError/ValueError if invalid."""
        num_classes, modality = await self.task_info(task_id)
        return resolve_config(config, self.settings, num_classes=num_classes, modality=modality)

    async def default_config(self, task_id: str) -> training_pb2.FitConfig:
        """The config of an automatic fit: the ACT loss, lambda searched on the settings' grid."""
        config = training_pb2.FitConfig(loss=training_pb2.LOSS_KIND_ACT)
        config.power_lambda_grid.extend(self.settings.power_lambda_grid)
        return await self.resolve_config(task_id, config)

    async def count_labels(self, task_id: str) -> int:
        """Distinct items of a task in the store."""
        return await asyncio.to_thread(self.store.count_labels, task_id)

    async def submit_fit(
        self, task_id: str, config: training_pb2.FitConfig, idempotency_key: str = ""
    ) -> training_pb2.FitStatus:
        """Queue a fit of a resolved config (the known fit for a known idempotency key)."""
        return await asyncio.to_thread(self.fits.submit, task_id, config, idempotency_key)

    async def get_fit(self, fit_id: str) -> training_pb2.FitStatus | None:
        """A fit's status, None if unknown."""
        return await asyncio.to_thread(self.store.get_fit, fit_id)

    async def list_fits(
        self, task_id: str | None, offset: int, limit: int
    ) -> list[training_pb2.FitStatus]:
        """Fits (of one task, or all) in creation order."""
        return await asyncio.to_thread(self.store.list_fits, task_id, offset=offset, limit=limit)

    async def cancel_fit(self, fit_id: str, reason: str) -> training_pb2.FitStatus | None:
        """Cancel a queued or running fit; None if unknown."""
        return await asyncio.to_thread(self.fits.cancel, fit_id, reason)
