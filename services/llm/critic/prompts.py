"""Criticism prompts of the paper's seven strategies (our own wording of appendix C).

=================  ==============================  ================================
strategy           output                          eps
=================  ==============================  ================================
naive              ``[error_probability]``         the stated probability
chain of thought   ``[reasoning][error_prob]``     the stated probability
multiple choice    ``[reasoning][error_level]``    level 1..5 -> (level - 1) / 4
devil's advocate   ``[reasoning][error_prob]``     the stated probability
naive-logit        ``Yes`` / ``No``                P(yes) / (P(yes) + P(no))
CoT-logit          ``[reasoning][Yes|No]``         P(yes) / (P(yes) + P(no))
CoT-perplexity     ``[reasoning][Yes|No]``         eq. 7 priority, mapped to [0, 1]
=================  ==============================  ================================

The item and, for devil's advocate, the annotator's statement go in the
fenced data block (both are untrusted: the statement is model output about
the item). The label under review comes from the validated annotation and
the task's own label names, after the block.
"""

from __future__ import annotations

from dataclasses import dataclass

from act.v1 import annotation_pb2, common_pb2, task_pb2

from services.llm.datablock import DataField, data_block
from services.llm.grammar import OutputSpec, bare_yes_no, bracketed
from services.llm.prompting import (
    Prompt,
    chat_prompt,
    item_fields,
    modality_of,
    prompt_template_hash,
    require_labels,
    system_text,
)
from services.llm.types import TextPart

#: Bump when the wording below changes (it is part of every template hash).
VERSION = "criticizer-v1"

S = common_pb2


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """How one strategy asks and what it expects back."""

    instruction: str
    output_format: str
    reasoning: bool
    answer: str  # "probability", "level" or "yes_no"
    white_box: bool = False


_PROB = (
    "a number between 0 and 1 with three decimals, where 0 means the label is surely right and "
    "1 that it is surely wrong"
)
_LEVELS = (
    "1 = correct, 2 = correct but not sure, 3 = not sure, 4 = incorrect but not sure, 5 = incorrect"
)
_NO_BRACKETS = "(do not use square brackets inside it)"

STRATEGIES: dict[int, StrategySpec] = {
    S.CRITIQUE_STRATEGY_NAIVE: StrategySpec(
        "Estimate the probability that the label given to the item is wrong. Reply with the "
        f"probability inside square brackets: [error_probability], {_PROB}; for example [0.911]. "
        "Do not write anything else.",
        "[error_probability]",
        reasoning=False,
        answer="probability",
    ),
    S.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT: StrategySpec(
        "Estimate the probability that the label given to the item is wrong. Think step by "
        "step, then reply in the format [reasoning][error_probability]: the first brackets hold "
        f"your step-by-step reasoning {_NO_BRACKETS}, the second the probability, {_PROB}; "
        "for example [...your reasoning...][0.911]. Do not write anything else.",
        "[reasoning][error_probability]",
        reasoning=True,
        answer="probability",
    ),
    S.CRITIQUE_STRATEGY_MULTIPLE_CHOICE: StrategySpec(
        "Judge whether the label given to the item is wrong by choosing one error level: "
        f"{_LEVELS}. Think step by step, then reply in the format [reasoning][error_level]: the "
        f"first brackets hold your step-by-step reasoning {_NO_BRACKETS}, the second only the "
        "level; for example [...your reasoning...][5] for incorrect. Do not write anything else.",
        "[reasoning][error_level]",
        reasoning=True,
        answer="level",
    ),
    S.CRITIQUE_STRATEGY_DEVILS_ADVOCATE: StrategySpec(
        "Play devil's advocate. The data block also holds the annotator's statement about the "
        "item's label (field annotator_statement). Examine that statement critically, look for "
        "flaws in its reasoning, and estimate the probability that it is wrong. Think step by "
        "step, then reply in the format [reasoning][error_probability]: the first brackets hold "
        f"your step-by-step reasoning {_NO_BRACKETS}, the second the probability, {_PROB}; "
        "for example [...your reasoning...][0.911]. Do not write anything else.",
        "[reasoning][error_probability]",
        reasoning=True,
        answer="probability",
    ),
    S.CRITIQUE_STRATEGY_NAIVE_LOGIT: StrategySpec(
        "Decide whether the label given to the item is wrong. Reply with one word: Yes if the "
        "label is a mistake, No if it is correct. Do not write anything else.",
        "Yes or No",
        reasoning=False,
        answer="yes_no",
        white_box=True,
    ),
    S.CRITIQUE_STRATEGY_COT_LOGIT: StrategySpec(
        "Decide whether the label given to the item is wrong. Think step by step, then reply in "
        "the format [reasoning][answer]: the first brackets hold your step-by-step reasoning "
        f"{_NO_BRACKETS}, the second either Yes (the label is a mistake) or No (it is correct); "
        "for example [...your reasoning...][No]. Do not write anything else.",
        "[reasoning][Yes or No]",
        reasoning=True,
        answer="yes_no",
        white_box=True,
    ),
}
# CoT-perplexity asks exactly what CoT-logit asks; only the measurement differs.
STRATEGIES[S.CRITIQUE_STRATEGY_COT_PERPLEXITY] = StrategySpec(
    STRATEGIES[S.CRITIQUE_STRATEGY_COT_LOGIT].instruction,
    "[reasoning][Yes or No]",
    reasoning=True,
    answer="yes_no",
    white_box=True,
)

_ROLE = "You are a careful, skeptical reviewer of data labels."
_TASK = {
    S.MODALITY_TEXT: "The item is a text, labelled with one of the labels below.",
    S.MODALITY_IMAGE: "The item is an image, labelled with one of the labels below.",
    S.MODALITY_VQA: (
        "The item is an image with a yes/no question; its label is the answer, one of the "
        "labels below."
    ),
}
_LABEL_LINE = "Label under review: {index}: {name}"


def spec_of(strategy: int) -> StrategySpec:
    """The strategy's spec; KeyError for an unknown strategy."""
    return STRATEGIES[strategy]


def output_spec(spec: StrategySpec, max_tokens: int) -> OutputSpec:
    """The constrained-decoding spec of a strategy's output."""
    if spec.answer == "yes_no" and not spec.reasoning:
        return bare_yes_no()
    return bracketed(spec.answer, reasoning=spec.reasoning, max_tokens=max_tokens)


def statement_of(annotation: annotation_pb2.Annotation, task: task_pb2.Task) -> str:
    """The annotator's statement judged by devil's advocate.

    Its chain of thought when it has one; for a naive annotation, the bare
    claim "the label is <index>: <name>".
    """
    name = task.labels[annotation.label_index].name
    claim = f"The label of the item is {annotation.label_index}: {name}."
    if annotation.rationale.strip():
        return f"{annotation.rationale.strip()}\n{claim}"
    return claim


def build(
    task: task_pb2.Task,
    annotation: annotation_pb2.Annotation,
    strategy: int,
    *,
    images: bool,
    max_tokens: int,
    claim_store: str = "",
    max_text_chars: int = 0,
) -> Prompt:
    """The criticism prompt of one annotation."""
    require_labels(task)
    spec = spec_of(strategy)
    item = annotation.item
    modality = modality_of(task, item)
    system = system_text(
        task,
        role=_ROLE,
        what=_TASK.get(modality, _TASK[S.MODALITY_TEXT]),
        output_format=spec.instruction,
    )
    fields = item_fields(
        item, images=images, claim_store=claim_store, max_text_chars=max_text_chars
    )
    if strategy == S.CRITIQUE_STRATEGY_DEVILS_ADVOCATE:
        fields.append(DataField("annotator_statement", text=statement_of(annotation, task)))
    label = _LABEL_LINE.format(
        index=annotation.label_index, name=task.labels[annotation.label_index].name
    )
    reminder = f"Reply with {spec.output_format} only."
    parts = (*data_block(fields), TextPart(f"{label}\n{reminder}"))
    return chat_prompt(
        system,
        parts,
        template_sha256=prompt_template_hash(
            VERSION,
            _ROLE,
            _TASK.get(modality, ""),
            spec.instruction,
            _LABEL_LINE,
            reminder,
            images=images,
        ),
        spec=output_spec(spec, max_tokens),
        max_tokens=max_tokens,
        reasoning=spec.reasoning,
    )
