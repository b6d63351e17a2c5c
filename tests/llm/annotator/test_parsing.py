"""Hostile annotator outputs: strict parsing accepts exactly one in-range index."""

from __future__ import annotations

import pytest

from services.llm.annotator.parsing import parse_annotation
from services.llm.outputs import OutputParseError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[3]", 3),
        ("  [ 7 ]\n", 7),
        ("```\n[2]\n```", 2),
        ("[0]", 0),
        ("[9]", 9),
    ],
)
def test_naive_accepts(text: str, expected: int) -> None:
    assert parse_annotation(text, 10, reasoning=False).label_index == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("3", "outside"),  # missing brackets
        ("The answer is 3", "outside"),
        ("", "no bracketed"),
        ("[3][4]", "got 2"),  # two answers
        ("[3] [3]", "got 2"),
        ("Answer: [3]", "outside"),
        ("[3].", "outside"),
        ("[11]", "out of range"),  # index 11 of 10
        ("[10]", "out of range"),
        ("[-1]", "not a label index"),
        ("[2.0]", "not a label index"),
        ("[two]", "not a label index"),
        ("[]", "not a label index"),
        ("[3", "unclosed"),
        ("3]", "outside"),
        ("I'm sorry, but I can't help with that.", "outside"),  # refusal
        ("[I cannot label this content.]", "not a label index"),  # refusal in brackets
        ("[99999999999]", "not a label index"),
    ],
)
def test_naive_rejects(text: str, reason: str) -> None:
    with pytest.raises(OutputParseError, match=reason):
        parse_annotation(text, 10, reasoning=False)


def test_cot_accepts_reasoning_and_index() -> None:
    parsed = parse_annotation("[It has sleeves and a collar, so a shirt.][6]", 10, reasoning=True)
    assert parsed.label_index == 6
    assert parsed.rationale == "It has sleeves and a collar, so a shirt."
    text = "[r][6]"
    start, end = parse_annotation(text, 10, reasoning=True).answer_span
    assert text[start:end] == "6"


def test_cot_allows_balanced_brackets_in_reasoning() -> None:
    parsed = parse_annotation("[Looks like label [6] (shirt).]\n[6]", 10, reasoning=True)
    assert parsed.label_index == 6


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[6]", "got 1"),  # answer without reasoning
        ("[reasoning][6][7]", "got 3"),  # two answers
        ("[reasoning] 6", "outside"),
        ("[  ][6]", "empty reasoning"),
        ("[reasoning][11]", "out of range"),
        ("[reasoning][0.5]", "not a label index"),
        ("[reasoning [6]", "unclosed"),
        ("I refuse. [reasoning][6]", "outside"),
    ],
)
def test_cot_rejects(text: str, reason: str) -> None:
    with pytest.raises(OutputParseError, match=reason):
        parse_annotation(text, 10, reasoning=True)


def test_error_messages_never_quote_the_output() -> None:
    secret = "[SECRET-CONTENT-1234][x]"
    with pytest.raises(OutputParseError) as info:
        parse_annotation(secret, 10, reasoning=True)
    assert "SECRET" not in str(info.value)
