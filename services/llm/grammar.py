"""Constrained-decoding specs of the output formats (GBNF for llama.cpp, regex for vLLM).

Used only where ``structured_output`` is configured: small local models
(SmolLM2) rarely follow ``[reasoning][answer]`` on their own. A grammar makes
the format hold but not the value (range checks stay in the parsers), and the
reasoning is bounded so it always fits in ``max_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One output format as a GBNF grammar and as a regular expression."""

    gbnf: str
    regex: str


def _reason_chars(max_tokens: int) -> int:
    # A token holds at least one character; leave room for the answer field.
    return max(8, max_tokens - 12)


def _answer(kind: str, n_labels: int = 0) -> tuple[str, str]:
    """(GBNF expression, regex) of an answer value."""
    if kind == "index":
        if 0 < n_labels <= 200:
            alts = " | ".join(f'"{i}"' for i in range(n_labels))
            return f"({alts})", "(?:" + "|".join(str(i) for i in range(n_labels)) + ")"
        return "[0-9]{1,6}", "[0-9]{1,6}"
    if kind == "probability":
        return (
            '("0" ("." [0-9] [0-9]? [0-9]?)? | "1" (".0" "0"? "0"?)?)',
            r"(?:0(?:\.[0-9]{1,3})?|1(?:\.0{1,3})?)",
        )
    if kind == "level":
        return "[1-5]", "[1-5]"
    if kind == "yes_no":
        return '("Yes" | "No")', "(?:Yes|No)"
    raise ValueError(kind)


@lru_cache(maxsize=1024)
def bracketed(kind: str, *, reasoning: bool, max_tokens: int, n_labels: int = 0) -> OutputSpec:
    """``[answer]`` or ``[reasoning][answer]`` for an answer of ``kind``.

    ``kind``: "index", "probability", "level" or "yes_no".
    """
    g_answer, r_answer = _answer(kind, n_labels)
    if not reasoning:
        return OutputSpec(f'root ::= "[" {g_answer} "]"\n', rf"\[{r_answer}\]")
    n = _reason_chars(max_tokens)
    return OutputSpec(
        f'root ::= "[" reason "][" {g_answer} "]"\n'
        f"reason ::= [^\\[\\]\\n] [^\\[\\]]{{0,{n - 1}}}\n",
        rf"\[[^\[\]\n][^\[\]]{{0,{n - 1}}}\]\[{r_answer}\]",
    )


@lru_cache(maxsize=1)
def bare_yes_no() -> OutputSpec:
    """A bare ``Yes`` or ``No`` (white-box naive prompt)."""
    return OutputSpec('root ::= ("Yes" | "No")\n', "(?:Yes|No)")
