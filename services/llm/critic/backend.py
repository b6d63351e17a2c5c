"""The LLM criticizer: the paper's seven strategies over any :class:`LLMClient`."""

from __future__ import annotations

import functools

from act.v1 import annotation_pb2, common_pb2, task_pb2

from services.backend_api.protocols import CritiqueResult
from services.llm.critic import prompts
from services.llm.critic.scoring import (
    eps_from_priority,
    mc_eps,
    parse_critique,
    priority_score,
)
from services.llm.logprobs import Aligned, eps_from_yes_no, perplexity, yes_no_probabilities
from services.llm.outputs import OutputParseError
from services.llm.prompting import LLMBackendBase, require_labels
from services.llm.types import ChatResponse
from services.runtime.retry import PermanentError

S = common_pb2


class WhiteBoxError(OutputParseError):
    """The output parsed but its token log-probabilities cannot give eps."""


class LLMCriticBackend(LLMBackendBase):
    """:class:`~services.backend_api.protocols.CriticBackend` over any :class:`LLMClient`.

    Black-box strategies read eps from the text. White-box strategies ask for
    the generated tokens' log-probabilities (never the prompt's) and need a
    server that returns them (vLLM, llama.cpp, OpenAI); on a client without
    them they fail permanently with that reason. Unparseable output is
    re-asked ``reask_attempts`` times, as in the annotator.
    """

    async def critique(
        self,
        task: task_pb2.Task,
        annotation: annotation_pb2.Annotation,
        strategy: common_pb2.CritiqueStrategy.ValueType,
    ) -> CritiqueResult:
        """Criticise one annotation."""
        n_labels = require_labels(task)
        if not 0 <= annotation.label_index < n_labels:
            raise PermanentError(f"annotation label {annotation.label_index} not in the task")
        try:
            spec = prompts.spec_of(strategy)
        except KeyError:
            raise PermanentError(f"unknown critique strategy {int(strategy)}") from None
        if spec.white_box and not self.client.supports_logprobs:
            raise PermanentError(
                f"{S.CritiqueStrategy.Name(strategy)} needs token logprobs, which this "
                f"{self.client.provider} backend does not return"
            )
        asked = await self.ask(
            task.critic_model,
            functools.partial(prompts.build, task, annotation, strategy),
            reasoning=spec.reasoning,
            logprobs=spec.white_box,
            output_format=spec.output_format,
            parse=lambda r: _score(strategy, spec, r),
            what="critique",
        )
        result = asked.answer.parsed
        return CritiqueResult(
            eps=result.eps,
            model=asked.choice.model,
            rationale=result.rationale,
            raw_output=asked.answer.response.text,
            multiple_choice_level=result.multiple_choice_level,
            p_yes=result.p_yes,
            p_no=result.p_no,
            answer_token=result.answer_token,
            perplexity=result.perplexity,
            priority_score=result.priority_score,
            prompt_template_sha256=asked.prompt.template_sha256,
            attempts=asked.answer.attempts,
            usage=asked.answer.usage,
        )


def _score(strategy: int, spec: prompts.StrategySpec, response: ChatResponse) -> CritiqueResult:
    """eps and the strategy's own fields (model/usage filled by the caller)."""
    parsed = parse_critique(response.text, spec)
    if not spec.white_box:
        if parsed.level is not None:
            return CritiqueResult(
                eps=mc_eps(parsed.level),
                model="",
                rationale=parsed.rationale,
                multiple_choice_level=parsed.level,
            )
        assert parsed.probability is not None
        return CritiqueResult(eps=parsed.probability, model="", rationale=parsed.rationale)
    if not response.tokens:
        # Asking again would not help: the server does not return them.
        raise PermanentError("the server returned no token logprobs", raw_output=response.text)
    aligned = Aligned.of(response.tokens)
    if aligned.text != response.text:
        # The tokens spell the text differently (byte-level pieces): use their spelling.
        parsed = parse_critique(aligned.text, spec)
    assert parsed.says_wrong is not None
    if strategy == S.CRITIQUE_STRATEGY_COT_PERPLEXITY:
        assert parsed.reasoning_span is not None
        idx = aligned.covering(*parsed.reasoning_span)
        if not idx:
            raise WhiteBoxError("no reasoning tokens")
        ppl = perplexity([aligned.tokens[i] for i in idx])
        score = priority_score(parsed.says_wrong, ppl)
        return CritiqueResult(
            eps=eps_from_priority(score),
            model="",
            rationale=parsed.rationale,
            perplexity=ppl,
            priority_score=score,
            answer_token="yes" if parsed.says_wrong else "no",
        )
    token = aligned.tokens[aligned.at(parsed.answer_span[0])]
    p_yes, p_no = yes_no_probabilities(token)
    try:
        eps = eps_from_yes_no(p_yes, p_no)
    except ValueError:
        raise WhiteBoxError("no yes/no probability at the answer position") from None
    return CritiqueResult(
        eps=eps,
        model="",
        rationale=parsed.rationale,
        p_yes=p_yes,
        p_no=p_no,
        answer_token=token.token,
    )
