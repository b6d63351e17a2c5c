"""What a stage kind contributes to the batch path: its records, requests and results.

The driver is the same for every stage; a :class:`StageKind` says which topics
it reads and writes, how one input record is parsed and kept in a batch's
state record, how it becomes a provider request (the stage's own prompt code,
never a copy of its wording) and how one answer becomes the stage's output
record. Two kinds exist (:data:`KINDS`, chosen by ``ACT_BATCH_STAGE_KIND``):

* :class:`AnnotatorKind`: items -> annotations, with the prompts and the
  strict parser of :mod:`services.llm.annotator` and the ids and shape of
  :mod:`services.annotator.stage`.
* :class:`CriticizerKind`: annotations -> critiques, with the prompts and the
  parser of :mod:`services.llm.critic` and the ids and shape of
  :mod:`services.criticizer.stage`. Only the verbalized strategies (eps read
  from the text: naive, CoT, multiple choice, devil's advocate); the logit and
  perplexity strategies need per-token logprobs, which batch results do not
  carry (Anthropic's never; OpenAI's are not requested here), so such a
  task's annotations are dead-lettered at once, before anything is billed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, TypeVar

from act.v1 import annotation_pb2, batch_pb2, common_pb2, critique_pb2, item_pb2, task_pb2
from google.protobuf.message import Message

from services.annotator.stage import STRATEGIES, annotation_id
from services.backend_api.protocols import CallUsage
from services.criticizer.stage import STRATEGIES as CRITIQUE_STRATEGIES
from services.criticizer.stage import critique_id, same_model
from services.llm.annotator import prompts
from services.llm.annotator.parsing import parse_annotation
from services.llm.critic import prompts as critic_prompts
from services.llm.critic.scoring import mc_eps, parse_critique
from services.llm.prompting import Prompt, choose_model, require_labels
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ChatResponse
from services.runtime.retry import PermanentError
from services.runtime.stage import Identity, Output

M = TypeVar("M", bound=Message)

#: Topic id of the retries of every kind (``act-batch-stage`` header: whose).
PENDING_TOPIC = "batch_pending"


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    """One record's prompt and the model parameters to ask with."""

    prompt: Prompt
    model: str
    max_tokens: int
    temperature: float


class StageKind(Protocol[M]):
    """A stage whose model calls can go through a batch API; ``M`` is its input message."""

    #: The stage's name (metrics, dead letters, BatchState.stage, retry headers).
    name: str
    #: Topic id of its input records (the retries come from :data:`PENDING_TOPIC`).
    input_topic: str
    #: Topic id of its output records.
    output_topic: str
    #: The ``act_batch_items_total`` outcome of a record that got its output.
    done_outcome: str

    def parse_input(self, data: bytes) -> M:
        """The input record of a Kafka value; DecodeError when it is not one."""
        ...

    def identify(self, message: M) -> Identity:
        """Task and item of an input record (task lookup, dead letters, record keys)."""
        ...

    def store(self, request: batch_pb2.BatchRequest, message: M) -> None:
        """Put the input record into its request of the batch's state record."""
        ...

    def load(self, request: batch_pb2.BatchRequest) -> M:
        """The input record of a request of a state record (what :meth:`store` put)."""
        ...

    def request_key(self, task: task_pb2.Task, message: M) -> str:
        """The deterministic id of the record's output (custom ids derive from it)."""
        ...

    def build(self, task: task_pb2.Task, message: M) -> BuiltPrompt:
        """The prompt of one record; PermanentError when the record cannot be asked about."""
        ...

    def output(
        self, task: task_pb2.Task, message: M, text: str, usage: CallUsage, attempt: int
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


def _prompt_options(o: LLMOptions, max_tokens: int) -> dict[str, Any]:
    """The prompt builders' options from the endpoint's settings (both stages' builders)."""
    return {
        "images": o.supports_images,
        "max_tokens": max_tokens,
        "claim_store": o.claim_store_url,
        "max_text_chars": o.max_text_chars,
    }


class AnnotatorKind:
    """Items -> annotations (see the module docstring)."""

    name = "annotator"
    input_topic = "items"
    output_topic = "annotations"
    done_outcome = "annotated"
    #: ``ACT_BATCH_DEFAULT_STRATEGY`` values this kind accepts.
    strategies: ClassVar[tuple[str, ...]] = tuple(STRATEGIES)

    def __init__(self, options: LLMOptions, default_strategy: str = "cot") -> None:
        self.options = options
        self.endpoint = _Endpoint(options)
        self.default_strategy = STRATEGIES[default_strategy]

    def _strategy(self, task: task_pb2.Task) -> common_pb2.AnnotationStrategy.ValueType:
        return task.annotation_strategy or self.default_strategy

    def parse_input(self, data: bytes) -> item_pb2.Item:
        """An Item."""
        return item_pb2.Item.FromString(data)

    def identify(self, message: item_pb2.Item) -> Identity:
        """The item's task and id."""
        return Identity(message.task_id, message.item_id)

    def store(self, request: batch_pb2.BatchRequest, message: item_pb2.Item) -> None:
        """In ``item`` (field 3), as before ``input`` existed: older drivers read it too."""
        request.item.CopyFrom(message)

    def load(self, request: batch_pb2.BatchRequest) -> item_pb2.Item:
        """``item``; ``input`` should a later version write the item there."""
        if not request.HasField("item") and request.input:
            return self.parse_input(request.input)
        return request.item

    def request_key(self, task: task_pb2.Task, message: item_pb2.Item) -> str:
        """The annotation id of :mod:`services.annotator.stage` (same item, same id)."""
        return annotation_id(task.task_id or message.task_id, message.item_id)

    def build(self, task: task_pb2.Task, message: item_pb2.Item) -> BuiltPrompt:
        """The annotation prompt, without the reference label (evaluation only)."""
        item = message
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
        prompt = prompts.build(task, blind, strategy, **_prompt_options(o, max_tokens))
        return BuiltPrompt(prompt, choice.model, max_tokens, choice.temperature)

    def output(
        self, task: task_pb2.Task, message: item_pb2.Item, text: str, usage: CallUsage, attempt: int
    ) -> Output:
        """The Annotation of a parsed answer, shaped like the streaming annotator's."""
        item = message
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
        return Output(topic=self.output_topic, key=item.item_id, value=annotation)


class CriticizerKind:
    """Annotations -> critiques, verbalized strategies only (see the module docstring)."""

    name = "criticizer"
    input_topic = "annotations"
    output_topic = "critiques"
    done_outcome = "criticized"
    #: ``ACT_BATCH_DEFAULT_STRATEGY`` values this kind accepts: the verbalized ones.
    strategies: ClassVar[tuple[str, ...]] = tuple(
        name
        for name, value in CRITIQUE_STRATEGIES.items()
        if not critic_prompts.spec_of(value).white_box
    )

    def __init__(self, options: LLMOptions, default_strategy: str = "cot") -> None:
        if default_strategy not in self.strategies:
            raise ValueError(
                f"default critique strategy {default_strategy!r} cannot go through a batch API "
                f"(choose one of {', '.join(self.strategies)})"
            )
        self.options = options
        self.endpoint = _Endpoint(options)
        self.default_strategy = CRITIQUE_STRATEGIES[default_strategy]

    def _strategy(self, task: task_pb2.Task) -> common_pb2.CritiqueStrategy.ValueType:
        return task.critique_strategy or self.default_strategy

    def _spec(self, task: task_pb2.Task) -> critic_prompts.StrategySpec:
        """The task's strategy spec; PermanentError for one a batch API cannot serve."""
        strategy = self._strategy(task)
        try:
            spec = critic_prompts.spec_of(strategy)
        except KeyError:
            raise PermanentError(f"unknown critique strategy {int(strategy)}") from None
        if spec.white_box:
            # Refused before a request is billed: batch results carry no token logprobs.
            raise PermanentError(
                f"{common_pb2.CritiqueStrategy.Name(strategy)} needs per-token logprobs, which "
                "batch APIs do not return; criticise this task with the streaming criticizer"
            )
        return spec

    def parse_input(self, data: bytes) -> annotation_pb2.Annotation:
        """An Annotation."""
        return annotation_pb2.Annotation.FromString(data)

    def identify(self, message: annotation_pb2.Annotation) -> Identity:
        """Task and item of the annotated item."""
        return Identity(message.item.task_id, message.item.item_id)

    def store(self, request: batch_pb2.BatchRequest, message: annotation_pb2.Annotation) -> None:
        """In ``input``, serialized (the annotation whole: the critique carries it)."""
        request.input = message.SerializeToString()

    def load(self, request: batch_pb2.BatchRequest) -> annotation_pb2.Annotation:
        """The annotation in ``input``."""
        return self.parse_input(request.input)

    def request_key(self, task: task_pb2.Task, message: annotation_pb2.Annotation) -> str:
        """The critique id of :mod:`services.criticizer.stage` (same annotation, same id)."""
        return critique_id(task.task_id or message.item.task_id, message.item.item_id)

    def build(self, task: task_pb2.Task, message: annotation_pb2.Annotation) -> BuiltPrompt:
        """The criticism prompt, without the item's reference label (evaluation only)."""
        if not message.item.item_id:
            raise PermanentError("annotation without item")
        n_labels = require_labels(task)
        if not 0 <= message.label_index < n_labels:
            raise PermanentError(f"annotation label {message.label_index} not in the task")
        spec = self._spec(task)
        o = self.options
        choice = choose_model(task.critic_model, self.endpoint, o.temperature, 0)
        if not choice.model:
            raise PermanentError("no model configured and the task names none")
        max_tokens = choice.max_tokens or (
            o.max_tokens_cot if spec.reasoning else o.max_tokens_naive
        )
        blind = annotation_pb2.Annotation()
        blind.CopyFrom(message)
        blind.item.ClearField("reference_label")  # never shown to a model
        prompt = critic_prompts.build(
            task, blind, self._strategy(task), **_prompt_options(o, max_tokens)
        )
        return BuiltPrompt(prompt, choice.model, max_tokens, choice.temperature)

    def output(
        self,
        task: task_pb2.Task,
        message: annotation_pb2.Annotation,
        text: str,
        usage: CallUsage,
        attempt: int,
    ) -> Output:
        """The Critique of a parsed answer, shaped like the streaming criticizer's."""
        annotation = message
        built = self.build(task, annotation)  # refusals, the model, the template hash
        spec = self._spec(task)
        parsed = parse_critique(text, spec)
        # The black-box scoring of services.llm.critic.backend: a level maps
        # through mc_eps, otherwise the stated probability is eps.
        level = parsed.level
        eps = mc_eps(level) if level is not None else parsed.probability
        if eps is None or not (math.isfinite(eps) and 0.0 <= eps <= 1.0):
            raise PermanentError(f"eps {eps!r} outside [0, 1]", raw_output=text)
        ref = task.critic_model
        model = common_pb2.ModelRef(
            provider=ref.provider or self.options.provider,
            model=built.model,
            base_url=ref.base_url,
            params=dict(ref.params),
        )
        critique = critique_pb2.Critique(
            critique_id=self.request_key(task, annotation),
            eps=eps,
            strategy=self._strategy(task),
            model=model,
            rationale=parsed.rationale,
            raw_output=text,
            prompt_template_sha256=built.prompt.template_sha256,
            attempts=attempt,
            self_criticism=same_model(annotation.model, model),
        )
        critique.annotation.CopyFrom(annotation)
        if level is not None:
            critique.multiple_choice_level = level
        critique.usage.CopyFrom(usage.to_proto())
        critique.created_at.FromDatetime(datetime.now(UTC))
        return Output(topic=self.output_topic, key=annotation.item.item_id, value=critique)


#: ``ACT_BATCH_STAGE_KIND`` -> the kind's class.
KINDS: dict[str, type[AnnotatorKind] | type[CriticizerKind]] = {
    AnnotatorKind.name: AnnotatorKind,
    CriticizerKind.name: CriticizerKind,
}


def make_kind(stage_kind: str, options: LLMOptions, default_strategy: str) -> StageKind[Any]:
    """The kind named ``stage_kind``; ValueError naming the known ones otherwise."""
    cls = KINDS.get(stage_kind)
    if cls is None:
        raise ValueError(
            f"unknown batch stage kind {stage_kind!r} (known: {', '.join(sorted(KINDS))})"
        )
    if default_strategy not in cls.strategies:
        raise ValueError(
            f"default strategy {default_strategy!r} is not one of the {stage_kind}'s batch "
            f"strategies ({', '.join(cls.strategies)})"
        )
    kind: StageKind[Any] = cls(options, default_strategy)
    return kind
