"""What a stage kind contributes to the batch path: a request builder and a result parser.

The driver is the same for every stage; a :class:`StageKind` says how one
input record becomes a provider request (the stage's own prompt code, never a
copy of its wording) and how one answer becomes the stage's output record.
:class:`AnnotatorKind` is the annotator's: items -> annotations, with the
prompts and the strict parser of :mod:`services.llm.annotator` and the ids and
shape of :mod:`services.annotator.stage`. A criticizer kind would plug in the
same way (annotations -> critiques).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.annotator.stage import STRATEGIES, annotation_id
from services.backend_api.protocols import CallUsage
from services.llm.annotator import prompts
from services.llm.annotator.parsing import parse_annotation
from services.llm.prompting import Prompt, choose_model, require_labels
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ChatResponse
from services.runtime.retry import PermanentError
from services.runtime.stage import Output


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    """One record's prompt and the model parameters to ask with."""

    prompt: Prompt
    model: str
    max_tokens: int
    temperature: float


class StageKind(Protocol):
    """A stage whose model calls can go through a batch API."""

    #: The stage's name (metrics, dead letters, BatchState.stage).
    name: str

    def request_key(self, task: task_pb2.Task, item: item_pb2.Item) -> str:
        """The deterministic id of the record's output (custom ids derive from it)."""
        ...

    def build(self, task: task_pb2.Task, item: item_pb2.Item) -> BuiltPrompt:
        """The prompt of one record; PermanentError when the record cannot be asked about."""
        ...

    def output(
        self, task: task_pb2.Task, item: item_pb2.Item, text: str, usage: CallUsage, attempt: int
    ) -> Output:
        """The output record of an answer; OutputParseError when it does not parse."""
        ...


class _Endpoint:
    """The provider and default model of the batch endpoint, as :func:`choose_model` reads them.

    Batch requests are never sent one by one, so ``chat`` is not available.
    """

    supports_logprobs = False

    def __init__(self, options: LLMOptions) -> None:
        self.provider: str = options.provider
        self.default_model = options.model
        self.supports_images = options.supports_images

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError("batch requests go through the batch API")

    async def aclose(self) -> None:
        """Nothing to close."""


class AnnotatorKind:
    """Items -> annotations (see the module docstring)."""

    name = "annotator"

    def __init__(self, options: LLMOptions, default_strategy: str = "cot") -> None:
        self.options = options
        self.endpoint = _Endpoint(options)
        self.default_strategy = STRATEGIES[default_strategy]

    def _strategy(self, task: task_pb2.Task) -> common_pb2.AnnotationStrategy.ValueType:
        return task.annotation_strategy or self.default_strategy

    def request_key(self, task: task_pb2.Task, item: item_pb2.Item) -> str:
        """The annotation id of :mod:`services.annotator.stage` (same item, same id)."""
        return annotation_id(task.task_id or item.task_id, item.item_id)

    def build(self, task: task_pb2.Task, item: item_pb2.Item) -> BuiltPrompt:
        """The annotation prompt, without the reference label (evaluation only)."""
        if not item.item_id:
            raise PermanentError("item without item_id")
        strategy = self._strategy(task)
        o = self.options
        choice = choose_model(task.annotator_model, self.endpoint, o.temperature, 0)
        if not choice.model:
            raise PermanentError("no model configured and the task names none")
        reasoning = prompts.is_reasoning(strategy)
        max_tokens = choice.max_tokens or (o.max_tokens_cot if reasoning else o.max_tokens_naive)
        blind = item_pb2.Item()
        blind.CopyFrom(item)
        blind.ClearField("reference_label")
        prompt = prompts.build(
            task,
            blind,
            strategy,
            images=o.supports_images,
            max_tokens=max_tokens,
            claim_store=o.claim_store_url,
            max_text_chars=o.max_text_chars,
        )
        return BuiltPrompt(prompt, choice.model, max_tokens, choice.temperature)

    def output(
        self, task: task_pb2.Task, item: item_pb2.Item, text: str, usage: CallUsage, attempt: int
    ) -> Output:
        """The Annotation of a parsed answer, shaped like the streaming annotator's."""
        n_labels = require_labels(task)
        strategy = self._strategy(task)
        parsed = parse_annotation(text, n_labels, prompts.is_reasoning(strategy))
        built = self.build(task, item)  # the template hash; cheap and deterministic
        annotation = annotation_pb2.Annotation(
            annotation_id=self.request_key(task, item),
            label_index=parsed.label_index,
            label_name=task.labels[parsed.label_index].name,
            rationale=parsed.rationale,
            raw_output=text,
            model=common_pb2.ModelRef(
                provider=task.annotator_model.provider or self.options.provider,
                model=built.model,
                base_url=task.annotator_model.base_url,
                params=dict(task.annotator_model.params),
            ),
            strategy=strategy,
            prompt_template_sha256=built.prompt.template_sha256,
            attempts=attempt,
        )
        annotation.item.CopyFrom(item)
        annotation.usage.CopyFrom(usage.to_proto())
        annotation.created_at.FromDatetime(datetime.now(UTC))
        return Output(topic="annotations", key=item.item_id, value=annotation)
