"""Yes/no probabilities at the answer token, perplexity, alignment."""

from __future__ import annotations

import math

import pytest

from services.llm.logprobs import (
    Aligned,
    eps_from_yes_no,
    perplexity,
    sequence_probability,
    yes_no_probabilities,
)
from services.llm.types import TokenLogprob

L = math.log


def test_variants_are_summed() -> None:
    token = TokenLogprob(
        "Yes",
        L(0.5),
        (
            ("Yes", L(0.5)),
            (" yes", L(0.1)),
            ("YES", L(0.05)),
            ("ĠNo", L(0.2)),
            ("no", L(0.1)),
            ("Maybe", L(0.05)),
        ),
    )
    p_yes, p_no = yes_no_probabilities(token)
    assert p_yes == pytest.approx(0.65) and p_no == pytest.approx(0.3)
    assert eps_from_yes_no(p_yes, p_no) == pytest.approx(0.65 / 0.95)


def test_bracketed_and_sentencepiece_tokens_count() -> None:
    token = TokenLogprob("[Yes", L(0.6), (("[Yes", L(0.6)), ("\u2581No", L(0.3))))
    assert yes_no_probabilities(token) == pytest.approx((0.6, 0.3))


def test_missing_side_is_bounded_by_the_least_alternative() -> None:
    token = TokenLogprob("No", L(0.7), (("No", L(0.7)), ("The", L(0.2)), ("A", L(0.05))))
    p_yes, p_no = yes_no_probabilities(token)
    assert p_no == pytest.approx(0.7) and p_yes == pytest.approx(0.05)


def test_appended_chosen_token_is_not_the_bound() -> None:
    # llama.cpp under a grammar: top-3 plus the chosen token appended at the end.
    token = TokenLogprob(
        "Yes", L(0.01), (("The", L(0.3)), ("To", L(0.2)), ("I", L(0.1)), ("Yes", L(0.01)))
    )
    p_yes, p_no = yes_no_probabilities(token)
    assert p_yes == pytest.approx(0.01) and p_no == pytest.approx(0.1)


def test_no_yes_no_at_all() -> None:
    p = yes_no_probabilities(TokenLogprob("[", L(0.9), (("[", L(0.9)),)))
    assert p == (0.0, 0.0)
    with pytest.raises(ValueError):
        eps_from_yes_no(*p)


def test_alignment_and_spans() -> None:
    tokens = [TokenLogprob(t, -0.1) for t in ["[", "Because", " x", "][", "Yes", "]"]]
    aligned = Aligned.of(tokens)
    assert aligned.text == "[Because x][Yes]"
    start = aligned.text.index("Yes")
    assert aligned.tokens[aligned.at(start)].token == "Yes"
    assert aligned.covering(1, 10) == [1, 2]
    assert aligned.covering(0, 2) == [0, 1]


def test_perplexity_and_sequence_probability() -> None:
    tokens = [TokenLogprob("a", L(0.5)), TokenLogprob("b", L(0.125))]
    assert perplexity(tokens) == pytest.approx(4.0)
    assert sequence_probability(tokens) == pytest.approx(0.0625)
    assert perplexity([TokenLogprob("x", -9999.0)]) == pytest.approx(math.exp(50))
    with pytest.raises(ValueError):
        perplexity([])
