"""Token log-probability helpers for white-box criticism and annotator confidence.

Generated tokens are aligned to the output text by concatenating their
strings; the parsers then give character spans (the answer, the reasoning)
and these helpers map spans to tokens.

Yes/no probabilities (paper, eq. 6): at the answer position, the
probabilities of every alternative that reads as "yes" are summed (``Yes``,
`` yes``, ``YES``, ``Ġyes``, ``[Yes``...), and likewise for "no". When only
one of the two is among the returned alternatives, the other's probability is
at most the smallest of the top-N probabilities there, and that bound is used:
a conservative estimate that pulls eps toward 0.5 rather than to 0 or 1. Ask
for many alternatives (``top_logprobs``, up to 20) to make this rare.

Under constrained decoding (llama.cpp grammars) the returned probabilities
are the model's own, before the grammar masks tokens: exactly the paper's
P("yes") and P("no").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.llm.types import TokenLogprob

_STRIP = " \t\n\r[](){}\"'`.,:;!*_"


def _normalize(token: str) -> str:
    # Byte-level BPE (Ġ) and SentencePiece (▁) mark spaces; some servers return raw pieces.
    return token.replace("\u0120", " ").replace("\u2581", " ").strip(_STRIP).lower()


@dataclass(frozen=True, slots=True)
class Aligned:
    """Generated tokens with their character spans in ``text`` (their concatenation)."""

    text: str
    tokens: tuple[TokenLogprob, ...]
    spans: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, tokens: Sequence[TokenLogprob]) -> Aligned:
        """Align tokens by concatenation."""
        spans: list[tuple[int, int]] = []
        pos = 0
        for t in tokens:
            spans.append((pos, pos + len(t.token)))
            pos += len(t.token)
        return cls("".join(t.token for t in tokens), tuple(tokens), tuple(spans))

    def covering(self, start: int, end: int) -> list[int]:
        """Indices of the tokens overlapping characters ``[start, end)``."""
        return [i for i, (a, b) in enumerate(self.spans) if a < end and b > start]

    def at(self, pos: int) -> int:
        """Index of the token holding character ``pos``."""
        for i, (a, b) in enumerate(self.spans):
            if a <= pos < b:
                return i
        raise IndexError(pos)


def yes_no_probabilities(token: TokenLogprob) -> tuple[float, float]:
    """(P(yes), P(no)) at one position, variants summed, a missing side bounded."""
    seen: dict[str, float] = {}
    for alt, lp in token.top:
        seen.setdefault(alt, lp)
    seen.setdefault(token.token, token.logprob)
    p_yes = p_no = 0.0
    for alt, lp in seen.items():
        word = _normalize(alt)
        if word == "yes":
            p_yes += math.exp(lp)
        elif word == "no":
            p_no += math.exp(lp)
    if token.top and (p_yes == 0.0) != (p_no == 0.0):
        # The absent side was not among the alternatives: it is no likelier than the least one.
        bound = math.exp(_least_alternative(token))
        if p_yes == 0.0:
            p_yes = bound
        else:
            p_no = bound
    return p_yes, p_no


def _least_alternative(token: TokenLogprob) -> float:
    """Log-probability of the last of the top-N alternatives.

    Servers append the chosen token to the list when it is outside the top N
    (llama.cpp does under a grammar); it then is the strict minimum and is not
    one of the N, so it is left out.
    """
    values = [lp for _, lp in token.top]
    others = [lp for alt, lp in token.top if alt != token.token]
    if others and token.logprob < min(others):
        return min(others)
    return min(values)


def eps_from_yes_no(p_yes: float, p_no: float) -> float:
    """eps = P(yes) / (P(yes) + P(no)) (paper, eq. 6); ValueError when both are 0."""
    total = p_yes + p_no
    if total <= 0.0 or not math.isfinite(total):
        raise ValueError("no yes/no probability at the answer position")
    return min(1.0, max(0.0, p_yes / total))


def sequence_probability(tokens: Sequence[TokenLogprob]) -> float:
    """Joint probability of a run of generated tokens."""
    return math.exp(sum(t.logprob for t in tokens))


def perplexity(tokens: Sequence[TokenLogprob]) -> float:
    """exp(-mean log p) over generated tokens (>= 1); ValueError when empty."""
    if not tokens:
        raise ValueError("perplexity of no tokens")
    # Servers report impossible tokens as -9999 (OpenAI); clamp so one does not dominate.
    mean = sum(max(t.logprob, -50.0) for t in tokens) / len(tokens)
    return math.exp(-mean)
