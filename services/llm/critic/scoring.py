"""Parsing criticizer outputs and turning them into eps.

Multiple choice: level ``L`` in 1..5 maps to eps = (L - 1) / 4, i.e.
1 -> 0.0, 2 -> 0.25, 3 -> 0.5, 4 -> 0.75, 5 -> 1.0. The paper samples by
threshold over levels (random among ties); a linear map keeps that order and
lets every sampling rule run. The level itself is kept in the critique.

CoT-perplexity (paper, eq. 7): reviewed first are confident "yes" (low PPL),
then unsure "yes" (high PPL), then unsure "no" (high PPL), last confident
"no" (low PPL). With c = 1 / PPL in (0, 1] (the geometric-mean probability
of the reasoning tokens: high = confident),

    priority_score = 1 + c   for "yes"   (in (1, 2])
    priority_score = 1 - c   for "no"    (in [0, 1))

and eps = priority_score / 2. This eps is an *order*, not a probability:
only the threshold rule applies (the task validation enforces it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.llm.critic.prompts import StrategySpec
from services.llm.outputs import (
    OutputParseError,
    expect_groups,
    parse_level,
    parse_probability,
    parse_yes_no,
    value_span,
    yes_no_span,
)

#: Multiple-choice error level -> eps.
MC_EPS: dict[int, float] = {1: 0.0, 2: 0.25, 3: 0.5, 4: 0.75, 5: 1.0}


@dataclass(frozen=True, slots=True)
class ParsedCritique:
    """A validated criticizer answer and where its parts lie in the output."""

    rationale: str = ""
    probability: float | None = None
    level: int | None = None
    says_wrong: bool | None = None  # yes/no strategies: "yes" = the label is wrong
    answer_span: tuple[int, int] = (0, 0)
    reasoning_span: tuple[int, int] | None = None


def parse_critique(text: str, spec: StrategySpec) -> ParsedCritique:
    """Parse one output strictly; OutputParseError when it breaks the format."""
    if spec.answer == "yes_no" and not spec.reasoning:
        return ParsedCritique(says_wrong=parse_yes_no(text), answer_span=yes_no_span(text))
    groups = expect_groups(text, 2 if spec.reasoning else 1)
    answer = groups[-1]
    rationale = groups[0].content.strip() if spec.reasoning else ""
    reasoning_span = (groups[0].start, groups[0].end) if spec.reasoning else None
    if spec.answer == "probability":
        return ParsedCritique(
            rationale=rationale,
            probability=parse_probability(answer.content),
            answer_span=value_span(answer.content, answer.start),
            reasoning_span=reasoning_span,
        )
    if spec.answer == "level":
        return ParsedCritique(
            rationale=rationale,
            level=parse_level(answer.content),
            answer_span=value_span(answer.content, answer.start),
            reasoning_span=reasoning_span,
        )
    if spec.answer == "yes_no":
        return ParsedCritique(
            rationale=rationale,
            says_wrong=parse_yes_no(answer.content),
            answer_span=yes_no_span(answer.content, answer.start),
            reasoning_span=reasoning_span,
        )
    raise OutputParseError(f"unknown answer kind {spec.answer}")


def mc_eps(level: int) -> float:
    """eps of a multiple-choice level (see the module docstring)."""
    return MC_EPS[level]


def priority_score(says_wrong: bool, ppl: float) -> float:
    """The eq. 7 ordering score in [0, 2] (higher = reviewed first)."""
    if not math.isfinite(ppl) or ppl < 1.0:
        ppl = max(1.0, ppl) if math.isfinite(ppl) else math.inf
    confidence = 0.0 if math.isinf(ppl) else 1.0 / ppl
    return 1.0 + confidence if says_wrong else 1.0 - confidence


def eps_from_priority(score: float) -> float:
    """Monotone map of the priority score into [0, 1] (an order, not a probability)."""
    return min(1.0, max(0.0, score / 2.0))
