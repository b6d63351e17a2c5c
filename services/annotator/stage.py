"""The annotator stage: items -> annotations, over any AnnotatorBackend.

The stage looks the item's task up, hides ``reference_label`` from the
backend, validates what the backend returns (a label index in range, a
confidence in [0, 1]) and emits one Annotation keyed by item id. Retries,
dead letters and exactly-once delivery are the runtime's.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from act.v1 import annotation_pb2, common_pb2, item_pb2
from prometheus_client import Counter

from services.backend_api.protocols import AnnotatorBackend
from services.backend_api.stage import BackendStage
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Output

ANNOTATIONS = Counter("act_annotations_total", "Annotations produced.", ["strategy"])
REASKED = Counter(
    "act_annotation_reasks_total", "Extra model calls after unparseable output.", ["strategy"]
)

#: Namespace of deterministic annotation ids (same item and task -> same id on reprocessing).
ANNOTATION_NS = uuid.UUID("5b7f1c1e-6a43-4c55-9a53-1f3a2d0e7a01")

STRATEGIES: dict[str, common_pb2.AnnotationStrategy.ValueType] = {
    "naive": common_pb2.ANNOTATION_STRATEGY_NAIVE,
    "cot": common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT,
}


def annotation_id(task_id: str, item_id: str) -> str:
    """Deterministic id of an item's annotation."""
    return uuid.uuid5(ANNOTATION_NS, f"{task_id}\x00{item_id}").hex


class AnnotatorStage(
    BackendStage[item_pb2.Item, AnnotatorBackend, common_pb2.AnnotationStrategy.ValueType]
):
    """Item -> Annotation through an :class:`AnnotatorBackend`."""

    name = "annotator"
    input_topic = "items"
    input_type = item_pb2.Item

    fallback_strategy = common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT
    strategy_enum = common_pb2.AnnotationStrategy

    def metric_families(self) -> tuple[Any, ...]:
        """Annotations produced, re-asks."""
        return (ANNOTATIONS, REASKED)

    async def process(self, envelope: Envelope[item_pb2.Item]) -> Sequence[Output]:
        """Annotate one item."""
        item = envelope.message
        if not item.item_id:
            raise PermanentError("item without item_id")
        task = await self.tasks.get(item.task_id)
        strategy = task.annotation_strategy or self.default_strategy
        # The backend never sees the reference label (evaluation only); the
        # annotation still carries the item unchanged for AQG/ABS downstream.
        blind = item_pb2.Item()
        blind.CopyFrom(item)
        blind.ClearField("reference_label")
        result, elapsed_ms = await self.timed(self.backend.annotate(task, blind, strategy))
        if not 0 <= result.label_index < len(task.labels):
            raise PermanentError(
                f"backend label index {result.label_index} outside 0..{len(task.labels) - 1}",
                raw_output=result.raw_output,
            )
        annotation = annotation_pb2.Annotation(
            annotation_id=annotation_id(task.task_id or item.task_id, item.item_id),
            label_index=result.label_index,
            label_name=task.labels[result.label_index].name,
            rationale=result.rationale,
            raw_output=result.raw_output,
            model=self.output_model(task.annotator_model, result.model),
            strategy=strategy,
            prompt_template_sha256=result.prompt_template_sha256,
            attempts=max(1, result.attempts),
        )
        annotation.item.CopyFrom(item)
        annotation.usage.CopyFrom(self.output_usage(result.usage, elapsed_ms))
        if result.confidence is not None and math.isfinite(result.confidence):
            annotation.confidence = min(1.0, max(0.0, result.confidence))
        annotation.created_at.FromDatetime(datetime.now(UTC))
        produced, reasked = self.strategy_metrics(strategy)
        produced.inc()
        if result.attempts > 1:
            reasked.inc(result.attempts - 1)
        return [Output(topic="annotations", key=item.item_id, value=annotation)]
