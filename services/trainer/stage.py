"""The trainer's Kafka edge: ``act.labels`` (``FinalLabel``, keyed by item id) in, nothing out.

Every label is upserted into the local store keyed by item id, so a label
seen twice counts once. The stage produces no records, so the runtime's
transaction only commits the input offset, after the upsert: a crash between
the two replays the record, which the upsert absorbs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from act.v1 import review_pb2

from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Hook, HookedStage, Output


class LabelSink(Protocol):
    """Where the stage's labels go (:class:`~services.trainer.facade.TrainerFacade`)."""

    async def add_label(self, label: review_pb2.FinalLabel) -> None:
        """Store a valid final label idempotently (and start what it triggers)."""
        ...


class TrainerStage(HookedStage[review_pb2.FinalLabel]):
    """``act.labels`` -> the local training set (no output records).

    The hooks open and close what the process built for it (event producer,
    task registry, fit queue, store; :func:`services.trainer.factory.build_trainer`).
    """

    name = "trainer"
    input_topic = "labels"
    input_type = review_pb2.FinalLabel

    def __init__(
        self,
        labels: LabelSink,
        *,
        on_start: Sequence[Hook] = (),
        on_stop: Sequence[Hook] = (),
    ) -> None:
        super().__init__(on_start=on_start, on_stop=on_stop)
        self.labels = labels

    async def process(self, envelope: Envelope[review_pb2.FinalLabel]) -> Sequence[Output]:
        """Validate and store the label (maybe starting an automatic fit). Produces nothing."""
        label = envelope.message
        if not label.item_id or not label.task_id:
            raise PermanentError("final label without item_id or task_id")
        if label.delta and not label.HasField("human_label"):
            raise PermanentError("final label with delta = 1 but no human label")
        await self.labels.add_label(label)
        return []
