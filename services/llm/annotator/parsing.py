"""Strict parsing of annotator outputs (``[label_index]``, ``[reasoning][label_index]``)."""

from __future__ import annotations

from dataclasses import dataclass

from services.llm.outputs import expect_groups, parse_index, value_span


@dataclass(frozen=True, slots=True)
class ParsedAnnotation:
    """A validated answer and where its index lies in the output."""

    label_index: int
    rationale: str
    answer_span: tuple[int, int]


def parse_annotation(text: str, n_labels: int, reasoning: bool) -> ParsedAnnotation:
    """Exactly one in-range label index (after the reasoning for CoT).

    Raises :class:`~services.llm.outputs.OutputParseError` otherwise: missing
    brackets, extra text, two answers, a non-integer or out-of-range index.
    """
    groups = expect_groups(text, 2 if reasoning else 1)
    answer = groups[-1]
    index = parse_index(answer.content, n_labels)
    rationale = groups[0].content.strip() if reasoning else ""
    return ParsedAnnotation(index, rationale, value_span(answer.content, answer.start))
