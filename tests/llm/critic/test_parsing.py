"""Hostile criticizer outputs for every strategy, and the eps maps."""

from __future__ import annotations

import pytest
from act.v1 import common_pb2 as S

from services.llm.critic.prompts import spec_of
from services.llm.critic.scoring import (
    MC_EPS,
    eps_from_priority,
    mc_eps,
    parse_critique,
    priority_score,
)
from services.llm.outputs import OutputParseError

NAIVE = spec_of(S.CRITIQUE_STRATEGY_NAIVE)
COT = spec_of(S.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT)
MC = spec_of(S.CRITIQUE_STRATEGY_MULTIPLE_CHOICE)
DEVIL = spec_of(S.CRITIQUE_STRATEGY_DEVILS_ADVOCATE)
NAIVE_LOGIT = spec_of(S.CRITIQUE_STRATEGY_NAIVE_LOGIT)
COT_LOGIT = spec_of(S.CRITIQUE_STRATEGY_COT_LOGIT)
COT_PPL = spec_of(S.CRITIQUE_STRATEGY_COT_PERPLEXITY)


@pytest.mark.parametrize(
    ("text", "p"), [("[0.911]", 0.911), ("[0]", 0.0), ("[1]", 1.0), ("[1.000]", 1.0), ("[.5]", 0.5)]
)
def test_naive_probability(text: str, p: float) -> None:
    assert parse_critique(text, NAIVE).probability == pytest.approx(p)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[1.7]", "outside"),
        ("[-0.2]", "outside"),
        ("[17%]", "not a decimal"),
        ("[nan]", "not a decimal"),
        ("[inf]", "not a decimal"),
        ("0.3", "outside the bracketed"),  # missing brackets
        ("[0.3][0.4]", "got 2"),  # two answers
        ("[0.3] because it looks fine", "outside"),
        ("I'm sorry, I can't assess this.", "outside"),  # refusal
        ("[high]", "not a decimal"),
    ],
)
def test_naive_rejects(text: str, reason: str) -> None:
    with pytest.raises(OutputParseError, match=reason):
        parse_critique(text, NAIVE)


@pytest.mark.parametrize("spec", [COT, DEVIL])
def test_cot_and_devil(spec) -> None:
    parsed = parse_critique("[The sleeves suggest a shirt, not a dress.][0.812]", spec)
    assert parsed.probability == pytest.approx(0.812)
    assert parsed.rationale.startswith("The sleeves")
    for bad, reason in [
        ("[r][1.7]", "outside"),
        ("[r][-0.2]", "outside"),
        ("[r][0.2][0.3]", "got 3"),
        ("[0.2]", "got 1"),
    ]:
        with pytest.raises(OutputParseError, match=reason):
            parse_critique(bad, spec)


def test_multiple_choice_levels_and_map() -> None:
    assert parse_critique("[unsure][3]", MC).level == 3
    assert [mc_eps(level) for level in range(1, 6)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert sorted(MC_EPS) == [1, 2, 3, 4, 5]
    for bad, reason in [
        ("[r][6]", "outside 1..5"),
        ("[r][0]", "outside 1..5"),
        ("[r][4.5]", "not an error level"),
        ("[r][incorrect]", "not an error"),
    ]:
        with pytest.raises(OutputParseError, match=reason):
            parse_critique(bad, MC)


@pytest.mark.parametrize(
    ("text", "wrong"), [("Yes", True), ("No", False), (" yes.", True), ("NO", False)]
)
def test_naive_logit_answer(text: str, wrong: bool) -> None:
    parsed = parse_critique(text, NAIVE_LOGIT)
    assert parsed.says_wrong is wrong
    start, end = parsed.answer_span
    assert text[start:end].lower() in ("yes", "no")


@pytest.mark.parametrize("text", ["Yes, it is wrong", "Maybe", "[Yes]", "Yes No", ""])
def test_naive_logit_rejects(text: str) -> None:
    with pytest.raises(OutputParseError):
        parse_critique(text, NAIVE_LOGIT)


@pytest.mark.parametrize("spec", [COT_LOGIT, COT_PPL])
def test_cot_yes_no(spec) -> None:
    text = "[It is a sneaker, the label says bag.][Yes]"
    parsed = parse_critique(text, spec)
    assert parsed.says_wrong is True
    assert parsed.reasoning_span is not None
    assert text[slice(*parsed.reasoning_span)].startswith("It is a sneaker")
    assert text[slice(*parsed.answer_span)] == "Yes"
    with pytest.raises(OutputParseError):
        parse_critique("[r][Perhaps]", spec)
    with pytest.raises(OutputParseError):
        parse_critique("[r][Yes][No]", spec)


def test_perplexity_priority_follows_eq7() -> None:
    # low-PPL yes > high-PPL yes > high-PPL no > low-PPL no
    order = [
        priority_score(True, 1.2),
        priority_score(True, 8.0),
        priority_score(False, 8.0),
        priority_score(False, 1.2),
    ]
    assert order == sorted(order, reverse=True)
    eps = [eps_from_priority(s) for s in order]
    assert eps == sorted(eps, reverse=True)
    assert all(0.0 <= e <= 1.0 for e in eps)
    assert eps_from_priority(priority_score(True, 1.0)) == 1.0
    assert eps_from_priority(priority_score(False, 1.0)) == 0.0
    assert priority_score(True, float("inf")) == 1.0
