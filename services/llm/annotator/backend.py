"""The LLM annotator: prompt, one call, strict parse, bounded re-ask, confidence."""

from __future__ import annotations

import functools

from act.v1 import common_pb2, item_pb2, task_pb2

from services.backend_api.protocols import AnnotationResult
from services.llm.annotator import prompts
from services.llm.annotator.parsing import ParsedAnnotation, parse_annotation
from services.llm.logprobs import Aligned, sequence_probability
from services.llm.outputs import OutputParseError
from services.llm.prompting import LLMBackendBase, require_labels
from services.llm.types import ChatResponse


class LLMAnnotatorBackend(LLMBackendBase):
    """:class:`~services.backend_api.protocols.AnnotatorBackend` over any :class:`LLMClient`.

    After unparseable output the model is asked again (``reask_attempts``
    times) with its reply and the problem appended, so the shared prefix stays
    cached; then :class:`PermanentError` carries the last raw output to the
    dead-letter topic. Transport failures propagate as
    :class:`~services.runtime.retry.RetryableError` for the runtime to retry.
    """

    async def annotate(
        self,
        task: task_pb2.Task,
        item: item_pb2.Item,
        strategy: common_pb2.AnnotationStrategy.ValueType,
    ) -> AnnotationResult:
        """Label one item (see the class docstring for failures)."""
        n_labels = require_labels(task)
        reasoning = prompts.is_reasoning(strategy)
        asked = await self.ask(
            task.annotator_model,
            functools.partial(prompts.build, task, item, strategy),
            reasoning=reasoning,
            logprobs=self.options.logprobs and self.client.supports_logprobs,
            output_format=prompts.output_format(reasoning),
            parse=lambda r: parse_annotation(r.text, n_labels, reasoning),
            what="annotation",
        )
        answer = asked.answer
        parsed, response = answer.parsed, answer.response
        return AnnotationResult(
            label_index=parsed.label_index,
            model=asked.choice.model,
            rationale=parsed.rationale,
            raw_output=response.text,
            confidence=_confidence(response, parsed, n_labels, reasoning),
            prompt_template_sha256=asked.prompt.template_sha256,
            attempts=answer.attempts,
            usage=answer.usage,
        )


def _confidence(
    response: ChatResponse, parsed: ParsedAnnotation, n_labels: int, reasoning: bool
) -> float | None:
    """P(label index tokens | prefix) from the generated tokens' logprobs, if any."""
    if not response.tokens:
        return None
    aligned = Aligned.of(response.tokens)
    span = parsed.answer_span
    if aligned.text != response.text:
        # Tokens do not spell the text exactly (byte-level pieces): parse what they spell.
        try:
            span = parse_annotation(aligned.text, n_labels, reasoning).answer_span
        except OutputParseError:
            return None
    indices = aligned.covering(*span)
    if not indices:
        return None
    return min(1.0, sequence_probability([aligned.tokens[i] for i in indices]))
