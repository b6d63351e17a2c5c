"""The seams between the annotator/criticizer services and model backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2


@dataclass(frozen=True, slots=True)
class CallUsage:
    """What one backend call cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0

    def to_proto(self) -> common_pb2.Usage:
        """As the contract's Usage message."""
        return common_pb2.Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
            latency_ms=self.latency_ms,
        )


@dataclass(frozen=True, slots=True)
class AnnotationResult:
    """A validated label for one item."""

    label_index: int
    model: str
    rationale: str = ""
    raw_output: str = ""
    confidence: float | None = None  # the annotator's own P(label), when known
    prompt_template_sha256: str = ""
    attempts: int = 1
    usage: CallUsage = field(default_factory=CallUsage)


@dataclass(frozen=True, slots=True)
class CritiqueResult:
    """The criticizer's estimate that an annotation is wrong."""

    eps: float  # in [0, 1]
    model: str
    rationale: str = ""
    raw_output: str = ""
    multiple_choice_level: int | None = None  # 1..5 (multiple-choice strategy)
    p_yes: float | None = None  # white-box logit strategies
    p_no: float | None = None
    answer_token: str = ""
    perplexity: float | None = None  # CoT-perplexity strategy
    priority_score: float | None = None
    prompt_template_sha256: str = ""
    attempts: int = 1
    usage: CallUsage = field(default_factory=CallUsage)


class AnnotatorBackend(Protocol):
    """Labels items of a task."""

    async def annotate(
        self,
        task: task_pb2.Task,
        item: item_pb2.Item,
        strategy: common_pb2.AnnotationStrategy.ValueType,
    ) -> AnnotationResult:
        """Label one item, or raise PermanentError/RetryableError (services.runtime.retry)."""
        ...


class CriticBackend(Protocol):
    """Estimates the probability that an annotation is wrong."""

    async def critique(
        self,
        task: task_pb2.Task,
        annotation: annotation_pb2.Annotation,
        strategy: common_pb2.CritiqueStrategy.ValueType,
    ) -> CritiqueResult:
        """Criticise one annotation, or raise PermanentError/RetryableError."""
        ...
