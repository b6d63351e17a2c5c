"""Builds the trainer's parts once and wires them: store, event sink, fits, facade, stage.

``python -m services.trainer`` and the tests use the same builder, so the
process runs what the tests run. The stage's start/stop hooks open and close
the clients built here, in order: event producer, task registry, fit queue
on start; fit queue (interrupting a running fit), task registry, event
producer, store on stop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.runtime.config import KafkaSettings
from services.runtime.stage import Hook
from services.runtime.tasks import TaskRegistry, TaskSource
from services.trainer.artifacts import FitFiles
from services.trainer.events import EventSink, KafkaEventSink, MemorySink
from services.trainer.facade import TrainerFacade
from services.trainer.fitqueue import FitQueue
from services.trainer.fitrun import FitRunner, StatusListener
from services.trainer.networks import network_spec
from services.trainer.settings import TrainerSettings
from services.trainer.stage import TrainerStage
from services.trainer.store import TrainerStore


@dataclass(frozen=True)
class Trainer:
    """The parts of a trainer process."""

    settings: TrainerSettings
    store: TrainerStore
    sink: EventSink
    fits: FitQueue
    facade: TrainerFacade
    stage: TrainerStage


def build_fit_queue(
    store: TrainerStore,
    settings: TrainerSettings,
    sink: EventSink,
    *,
    on_change: StatusListener | None = None,
) -> FitQueue:
    """A fit queue (not started) running fits on ``store`` as ``settings`` say."""
    runner = FitRunner(
        store,
        sink,
        FitFiles(settings.checkpoint_dir),
        device=settings.device,
        checkpoint_every=settings.checkpoint_every,
        on_change=on_change,
        publish_models=settings.publish_models,
    )
    return FitQueue(
        store,
        runner,
        min_new_labels=settings.min_new_labels,
        torch_threads=settings.torch_threads,
    )


def build_trainer(
    settings: TrainerSettings,
    kafka: KafkaSettings | None = None,
    *,
    sink: EventSink | None = None,
    tasks: TaskSource | None = None,
) -> Trainer:
    """Every part of a trainer from its settings.

    With ``kafka``, training events go to Kafka unless ``sink`` is given, and
    tasks are read from ``act.tasks`` when ``settings.use_task_registry`` and
    no ``tasks`` is given (a given task source is the caller's to open and
    close). Without ``kafka``, events go to ``sink`` or a :class:`MemorySink`.
    """
    if settings.model:
        network_spec(settings.model)  # fail at start-up, not on the first automatic fit
    store = TrainerStore(settings.store_path)
    events: EventSink = MemorySink() if sink is None else sink
    kafka_sink: KafkaEventSink | None = None
    registry: TaskRegistry | None = None
    if kafka is not None and sink is None:
        kafka_sink = KafkaEventSink(kafka, settings.event_timeout_s)
        events = kafka_sink
    if kafka is not None and tasks is None and settings.use_task_registry:
        registry = TaskRegistry(kafka)
    fits = build_fit_queue(store, settings, events)

    async def start_fits() -> None:
        fits.start()  # re-queues the fits the last process left queued or running

    async def stop_fits() -> None:
        await asyncio.to_thread(fits.stop)

    async def close_store() -> None:
        store.close()

    clients: list[KafkaEventSink | TaskRegistry] = [
        c for c in (kafka_sink, registry) if c is not None
    ]
    on_start: list[Hook] = [*(c.start for c in clients), start_fits]
    on_stop: list[Hook] = [stop_fits, *(c.stop for c in reversed(clients)), close_store]
    facade = TrainerFacade(store, fits, settings, tasks if tasks is not None else registry)
    stage = TrainerStage(facade, on_start=on_start, on_stop=on_stop)
    return Trainer(
        settings=settings, store=store, sink=events, fits=fits, facade=facade, stage=stage
    )
