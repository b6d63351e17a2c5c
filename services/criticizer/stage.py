"""The criticizer stage: annotations -> critiques, over any CriticBackend.

Self- or cross-criticism is configuration: the task's ``critic_model`` names
the criticizer; ``Critique.self_criticism`` records whether it is the
annotator's own model (same provider family and model name).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from act.v1 import annotation_pb2, common_pb2, critique_pb2, task_pb2
from prometheus_client import Counter, Histogram

from services.backend_api.protocols import CriticBackend, CritiqueResult
from services.backend_api.stage import BackendStage
from services.llm.prompting import OPENAI_PROVIDERS
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Identity, Output

CRITIQUES = Counter("act_critiques_total", "Critiques produced.", ["strategy"])
EPS = Histogram(
    "act_critique_eps",
    "Distribution of eps by strategy.",
    ["strategy"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)

CRITIQUE_NS = uuid.UUID("0d7c2a9e-3f7b-4a0c-8b51-52e1c8f0b6d2")

STRATEGIES: dict[str, common_pb2.CritiqueStrategy.ValueType] = {
    "naive": common_pb2.CRITIQUE_STRATEGY_NAIVE,
    "cot": common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT,
    "multiple-choice": common_pb2.CRITIQUE_STRATEGY_MULTIPLE_CHOICE,
    "devils-advocate": common_pb2.CRITIQUE_STRATEGY_DEVILS_ADVOCATE,
    "naive-logit": common_pb2.CRITIQUE_STRATEGY_NAIVE_LOGIT,
    "cot-logit": common_pb2.CRITIQUE_STRATEGY_COT_LOGIT,
    "cot-perplexity": common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY,
}


def critique_id(task_id: str, item_id: str) -> str:
    """Deterministic id of an item's critique."""
    return uuid.uuid5(CRITIQUE_NS, f"{task_id}\x00{item_id}").hex


def _family(provider: str) -> str:
    p = provider.strip().lower()
    return "openai" if p in OPENAI_PROVIDERS else p


def same_model(a: common_pb2.ModelRef, b: common_pb2.ModelRef) -> bool:
    """Whether two refs name the same model (self-criticism)."""
    if not a.model.strip() or a.model.strip() != b.model.strip():
        return False
    fa, fb = _family(a.provider), _family(b.provider)
    return not fa or not fb or fa == fb


class CriticizerStage(
    BackendStage[annotation_pb2.Annotation, CriticBackend, common_pb2.CritiqueStrategy.ValueType]
):
    """Annotation -> Critique through a :class:`CriticBackend`."""

    name = "criticizer"
    input_topic = "annotations"
    input_type = annotation_pb2.Annotation

    fallback_strategy = common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT
    strategy_enum = common_pb2.CritiqueStrategy

    def metric_families(self) -> tuple[Any, ...]:
        """Critiques produced, eps distribution."""
        return (CRITIQUES, EPS)

    def identify(self, message: annotation_pb2.Annotation) -> Identity:
        """Task and item of the annotated item."""
        return Identity(task_id=message.item.task_id, item_id=message.item.item_id)

    async def process(self, envelope: Envelope[annotation_pb2.Annotation]) -> Sequence[Output]:
        """Criticise one annotation."""
        annotation = envelope.message
        item = annotation.item
        if not item.item_id:
            raise PermanentError("annotation without item")
        task = await self.tasks.get(item.task_id)
        strategy = task.critique_strategy or self.default_strategy
        blind = annotation_pb2.Annotation()
        blind.CopyFrom(annotation)
        blind.item.ClearField("reference_label")  # never shown to a model
        result, elapsed_ms = await self.timed(self.backend.critique(task, blind, strategy))
        critique = self._critique(task.task_id or item.task_id, annotation, strategy, result, task)
        critique.usage.CopyFrom(self.output_usage(result.usage, elapsed_ms))
        produced, eps = self.strategy_metrics(strategy)
        produced.inc()
        eps.observe(critique.eps)
        return [Output(topic="critiques", key=item.item_id, value=critique)]

    def _critique(
        self,
        task_id: str,
        annotation: annotation_pb2.Annotation,
        strategy: common_pb2.CritiqueStrategy.ValueType,
        result: CritiqueResult,
        task: task_pb2.Task,
    ) -> critique_pb2.Critique:
        if not (math.isfinite(result.eps) and 0.0 <= result.eps <= 1.0):
            raise PermanentError(
                f"backend eps {result.eps!r} outside [0, 1]", raw_output=result.raw_output
            )
        model = self.output_model(task.critic_model, result.model)
        critique = critique_pb2.Critique(
            critique_id=critique_id(task_id, annotation.item.item_id),
            eps=result.eps,
            strategy=strategy,
            model=model,
            rationale=result.rationale,
            raw_output=result.raw_output,
            prompt_template_sha256=result.prompt_template_sha256,
            attempts=max(1, result.attempts),
            self_criticism=same_model(annotation.model, model),
        )
        critique.annotation.CopyFrom(annotation)
        if result.multiple_choice_level is not None:
            if not 1 <= result.multiple_choice_level <= 5:
                raise PermanentError(
                    f"multiple-choice level {result.multiple_choice_level} outside 1..5",
                    raw_output=result.raw_output,
                )
            critique.multiple_choice_level = result.multiple_choice_level
        if result.p_yes is not None and result.p_no is not None:
            critique.logit.CopyFrom(
                critique_pb2.LogitDetails(
                    p_yes=result.p_yes, p_no=result.p_no, answer_token=result.answer_token
                )
            )
        elif result.perplexity is not None:
            critique.perplexity.CopyFrom(
                critique_pb2.PerplexityDetails(
                    perplexity=result.perplexity,
                    answer_label=1 if result.answer_token.strip().lower() == "yes" else 0,
                    priority_score=result.priority_score or 0.0,
                )
            )
        critique.created_at.FromDatetime(datetime.now(UTC))
        return critique
