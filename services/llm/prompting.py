"""Prompt pieces shared by the annotator and the criticizer.

Layout, for prefix caching: the *system* message holds only what a task
shares across its items (role, task description, label list, data-block
rules, output format), so it is byte-identical for every item of a task and a
vLLM/llama.cpp server serves it from its prefix cache; the *user* message
holds the item's fenced data block, then the per-item facts (the label under
review) and a fixed reminder of the format.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, Protocol, TypeVar

from act.v1 import common_pb2, item_pb2, task_pb2

from services.backend_api.protocols import CallUsage
from services.llm.datablock import DATA_RULES, DataField
from services.llm.grammar import OutputSpec
from services.llm.images import item_image, render_as_text
from services.llm.outputs import OutputParseError
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ChatResponse, ContentPart, LLMClient, Message
from services.runtime.retry import PermanentError

#: ModelRef.provider values served by an OpenAI-compatible client.
OPENAI_PROVIDERS = frozenset(
    {"openai", "openai-compatible", "vllm", "llama-cpp", "llama.cpp", "llamacpp", "azure-openai"}
)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A built prompt: messages, its template's hash, output format and length cap."""

    messages: tuple[Message, ...]
    template_sha256: str
    spec: OutputSpec
    max_tokens: int
    reasoning: bool


#: The system message of every prompt: what a task shares across its items.
SYSTEM_TEMPLATE = (
    "{role}\n\n{task}\n{instructions}\nLabels (index: name):\n{labels}\n\n{rules}\n\n{format}"
)


def system_text(task: task_pb2.Task, *, role: str, what: str, output_format: str) -> str:
    """The system message (:data:`SYSTEM_TEMPLATE`): the role, ``what`` to do with
    an item of the task's modality, the task's own instructions, its labels, the
    data-block rules and the output format."""
    instructions = f"Task description: {task.instructions.strip()}\n" if task.instructions else ""
    return SYSTEM_TEMPLATE.format(
        role=role,
        task=what,
        instructions=instructions,
        labels=label_list(task),
        rules=DATA_RULES,
        format=output_format,
    )


def prompt_template_hash(
    version: str, role: str, what: str, output_format: str, *user: str, images: bool
) -> str:
    """The :func:`template_hash` of a prompt: its wording ``version``, the unfilled
    parts of its system message (:func:`system_text`), then those of its user
    message (``user``, in order), and whether it shows images."""
    return template_hash(
        version, SYSTEM_TEMPLATE, role, what, output_format, DATA_RULES, *user, str(images)
    )


def chat_prompt(
    system: str,
    user: tuple[ContentPart, ...],
    *,
    template_sha256: str,
    spec: OutputSpec,
    max_tokens: int,
    reasoning: bool,
) -> Prompt:
    """A prompt of one system and one user message."""
    return Prompt(
        messages=(Message.text("system", system), Message("user", user)),
        template_sha256=template_sha256,
        spec=spec,
        max_tokens=max_tokens,
        reasoning=reasoning,
    )


@lru_cache(maxsize=1024)
def template_hash(*parts: str) -> str:
    """Hex SHA-256 of a prompt template (its unfilled parts, in order)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def label_list(task: task_pb2.Task) -> str:
    """``index: name (description)``, one label a line."""
    lines = []
    for i, label in enumerate(task.labels):
        line = f"{i}: {label.name}"
        if label.description:
            line += f" ({label.description})"
        lines.append(line)
    return "\n".join(lines)


def require_labels(task: task_pb2.Task) -> int:
    """Number of labels; PermanentError for a task without any."""
    if not task.labels:
        raise PermanentError(f"task {task.task_id!r} has no labels")
    return len(task.labels)


def modality_of(task: task_pb2.Task, item: item_pb2.Item) -> int:
    """The task's modality, or one inferred from the item when unspecified."""
    if task.modality != common_pb2.MODALITY_UNSPECIFIED:
        return int(task.modality)
    if item.WhichOneof("image") is None:
        return int(common_pb2.MODALITY_TEXT)
    return int(common_pb2.MODALITY_VQA if item.question else common_pb2.MODALITY_IMAGE)


def clip_text(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters (0: whole), saying so at the cut.

    A small local model has a small context window; an e-mail of many
    thousands of characters would not fit, and its first part decides most
    labels. The note is inside the data block, so it is data like the rest.
    """
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n[... cut: {len(text) - max_chars} more characters]"


def item_fields(
    item: item_pb2.Item, *, images: bool, claim_store: str = "", max_text_chars: int = 0
) -> list[DataField]:
    """The item's content as data-block fields (never ``reference_label``); text
    longer than ``max_text_chars`` (0: no limit) is cut (:func:`clip_text`).

    With ``images`` False the image is replaced by a character rendering (see
    :mod:`services.llm.images`); the item's text, when present, is kept as
    its caption or context.
    """
    fields: list[DataField] = []
    image = item_image(item, claim_store)
    if image is not None:
        if images:
            fields.append(DataField("image", image=image))
        else:
            rendering = render_as_text(image.data) if image.data else None
            fields.append(
                DataField(
                    "image (as characters; brighter pixels are denser characters)",
                    text=rendering or "(not available to this text-only model)",
                )
            )
        if item.text:
            fields.append(DataField("caption", text=clip_text(item.text, max_text_chars)))
    elif item.text:
        fields.append(DataField("text", text=clip_text(item.text, max_text_chars)))
    if item.question:
        fields.append(DataField("question", text=item.question))
    if not fields:
        raise PermanentError("item has no content (no text, image or question)")
    return fields


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The model and generation parameters for one call."""

    model: str
    temperature: float
    max_tokens: int | None  # None: the prompt's own cap
    top_logprobs: int


def choose_model(
    ref: common_pb2.ModelRef, client: LLMClient, temperature: float, top_logprobs: int
) -> ModelChoice:
    """The task's model on this service's endpoint, with its ``params`` applied.

    The endpoint and key are the service's own: a task can name a model but not
    send the key elsewhere. A task that names another provider is refused.
    """
    provider = ref.provider.strip().lower()
    family = "openai" if provider in OPENAI_PROVIDERS else provider
    if provider and family != client.provider:
        raise PermanentError(
            f"task wants provider {ref.provider!r} but this service runs {client.provider!r}"
        )
    params: Mapping[str, str] = ref.params
    max_tokens = _param(params, "max_tokens", int, 1, 65_536)
    temp = _param(params, "temperature", float, 0.0, 2.0)
    top = _param(params, "top_logprobs", int, 1, 20)
    return ModelChoice(
        model=ref.model.strip() or client.default_model,
        temperature=temperature if temp is None else float(temp),
        max_tokens=None if max_tokens is None else int(max_tokens),
        top_logprobs=top_logprobs if top is None else int(top),
    )


def _param(
    params: Mapping[str, str], name: str, kind: type[int] | type[float], lo: float, hi: float
) -> int | float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise PermanentError(f"model param {name}={raw!r} is not a {kind.__name__}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise PermanentError(f"model param {name}={raw!r} outside [{lo:g}, {hi:g}]")
    return value


def reask_message(reason: str, output_format: str) -> Message:
    """The follow-up after unparseable output (names the problem, not the output)."""
    return Message.text(
        "user",
        f"Your reply could not be read ({reason}). Reply again with exactly the required "
        f"format {output_format} and nothing else.",
    )


def add_usage(a: CallUsage, b: CallUsage) -> CallUsage:
    """Usage of two calls together."""
    return CallUsage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        cost_usd=a.cost_usd + b.cost_usd,
        latency_ms=a.latency_ms + b.latency_ms,
    )


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """A reply that parsed, with the usage of every call it took."""

    parsed: T
    response: ChatResponse
    usage: CallUsage
    attempts: int


async def ask_until_parsed(
    client: LLMClient,
    prompt: Prompt,
    choice: ModelChoice,
    *,
    max_tokens: int,
    top_logprobs: int,
    reask_attempts: int,
    output_format: str,
    parse: Callable[[ChatResponse], T],
    what: str,
) -> Answer[T]:
    """Ask, and after unparseable output ask again ``reask_attempts`` times.

    A re-ask appends the model's reply and the problem to the conversation, so
    the shared prefix stays cached. After the last attempt a
    :class:`PermanentError` carries the last raw output to the dead-letter
    topic; transport failures propagate for the runtime to retry.
    """
    messages: list[Message] = list(prompt.messages)
    usage = CallUsage()
    reason = ""
    text = ""
    for attempt in range(1, reask_attempts + 2):
        response = await client.chat(
            ChatRequest(
                messages=tuple(messages),
                max_tokens=max_tokens,
                model=choice.model,
                temperature=choice.temperature,
                top_logprobs=top_logprobs,
                grammar=prompt.spec.gbnf,
                regex=prompt.spec.regex,
            )
        )
        usage = add_usage(usage, response.usage)
        text = response.text
        try:
            return Answer(parse(response), response, usage, attempt)
        except OutputParseError as exc:
            reason = str(exc)
            messages += [Message.text("assistant", text), reask_message(reason, output_format)]
    raise PermanentError(
        f"unparseable {what} after {reask_attempts + 1} call(s): {reason}", raw_output=text
    )


class PromptBuilder(Protocol):
    """Builds one record's prompt for a client (see :meth:`LLMBackendBase.ask`)."""

    def __call__(
        self, *, images: bool, max_tokens: int, claim_store: str, max_text_chars: int
    ) -> Prompt: ...


@dataclass(frozen=True, slots=True)
class Asked(Generic[T]):
    """What :meth:`LLMBackendBase.ask` used and got: the model, the prompt, the answer."""

    choice: ModelChoice
    prompt: Prompt
    answer: Answer[T]


class LLMBackendBase:
    """What the LLM annotator and critic backends share: a client, the options,
    and one prompted, parsed (and re-asked) call of the task's model."""

    def __init__(self, client: LLMClient, options: LLMOptions) -> None:
        self.client = client
        self.options = options

    async def ask(
        self,
        ref: common_pb2.ModelRef,
        build: PromptBuilder,
        *,
        reasoning: bool,
        logprobs: bool,
        output_format: str,
        parse: Callable[[ChatResponse], T],
        what: str,
    ) -> Asked[T]:
        """Choose the model of ``ref`` (:func:`choose_model`), build the prompt
        with the output cap (the task's ``max_tokens`` or the options' cap for
        ``reasoning`` or not), and ask until the reply parses
        (:func:`ask_until_parsed`); ``logprobs``: ask for the generated
        tokens' log-probabilities."""
        options = self.options
        choice = choose_model(ref, self.client, options.temperature, options.top_logprobs)
        max_tokens = choice.max_tokens or (
            options.max_tokens_cot if reasoning else options.max_tokens_naive
        )
        prompt = build(
            images=self.client.supports_images,
            max_tokens=max_tokens,
            claim_store=options.claim_store_url,
            max_text_chars=options.max_text_chars,
        )
        answer = await ask_until_parsed(
            self.client,
            prompt,
            choice,
            max_tokens=max_tokens,
            top_logprobs=choice.top_logprobs if logprobs else 0,
            reask_attempts=options.reask_attempts,
            output_format=output_format,
            parse=parse,
            what=what,
        )
        return Asked(choice, prompt, answer)
