"""Annotation prompts: naive ``[label_index]`` and chain-of-thought ``[reasoning][label_index]``.

Our own wording of the paper's appendix C prompts, for text classification,
image classification and yes/no VQA. See :mod:`services.llm.prompting` for the
layout (shared instructions first, the item's fenced data block last).
"""

from __future__ import annotations

from act.v1 import common_pb2, item_pb2, task_pb2

from services.llm.datablock import data_block
from services.llm.grammar import bracketed
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
VERSION = "annotator-v1"

_ROLE = "You are a careful, impartial data annotator."

_TASK = {
    common_pb2.MODALITY_TEXT: "Classify the text of the item into exactly one of the labels below.",
    common_pb2.MODALITY_IMAGE: (
        "Classify the image of the item into exactly one of the labels below."
    ),
    common_pb2.MODALITY_VQA: (
        "Answer the yes/no question of the item about its image, choosing exactly one of the "
        "labels below."
    ),
}

_NAIVE_FORMAT = (
    "Reply with the index of the label inside square brackets: [label_index]. For example, "
    "if the label is {first_label}, reply [0]. Do not write anything else."
)
_COT_FORMAT = (
    "Think step by step, then give the label. Reply in the format [reasoning][label_index]: "
    "the first brackets hold your step-by-step reasoning (do not use square brackets inside "
    "it), the second hold only the label index, for example [...your reasoning...][0] for "
    "{first_label}. Do not write anything else."
)
_REMINDER = {
    False: "Reply with [label_index] only.",
    True: "Reply with [reasoning][label_index] only.",
}


def is_reasoning(strategy: common_pb2.AnnotationStrategy.ValueType) -> bool:
    """Whether the strategy asks for reasoning before the answer."""
    return bool(strategy == common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT)


def output_format(reasoning: bool) -> str:
    """The format string named in re-asks."""
    return "[reasoning][label_index]" if reasoning else "[label_index]"


def build(
    task: task_pb2.Task,
    item: item_pb2.Item,
    strategy: common_pb2.AnnotationStrategy.ValueType,
    *,
    images: bool,
    max_tokens: int,
    claim_store: str = "",
    max_text_chars: int = 0,
) -> Prompt:
    """The annotation prompt of one item (``max_tokens``: the output cap, bounds the grammar)."""
    n_labels = require_labels(task)
    reasoning = is_reasoning(strategy)
    modality = modality_of(task, item)
    fmt = _COT_FORMAT if reasoning else _NAIVE_FORMAT
    system = system_text(
        task,
        role=_ROLE,
        what=_TASK.get(modality, _TASK[common_pb2.MODALITY_TEXT]),
        output_format=fmt.format(first_label=task.labels[0].name),
    )
    reminder = _REMINDER[reasoning]
    fields = item_fields(
        item, images=images, claim_store=claim_store, max_text_chars=max_text_chars
    )
    parts = (*data_block(fields), TextPart(reminder))
    return chat_prompt(
        system,
        parts,
        template_sha256=prompt_template_hash(
            VERSION, _ROLE, _TASK.get(modality, ""), fmt, reminder, images=images
        ),
        spec=bracketed("index", reasoning=reasoning, max_tokens=max_tokens, n_labels=n_labels),
        max_tokens=max_tokens,
        reasoning=reasoning,
    )
