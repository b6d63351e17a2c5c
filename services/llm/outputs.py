"""Strict reading of bracketed model outputs: ``[a]``, ``[reasoning][a]``.

The output must be a sequence of top-level bracket groups with only
whitespace between and around them; brackets inside a group must balance.
The only leniency is one surrounding Markdown code fence. Error messages
describe the problem, never the output (they end up in logs and dead
letters' ``error_message``; the raw output goes to ``raw_model_output``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\n(?P<body>.*?)\n?```\s*\Z", re.DOTALL)
_INDEX = re.compile(r"\A\s*(\d{1,6})\s*\Z")
_NUMBER = re.compile(r"\A\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\Z")
_LEVEL = re.compile(r"\A\s*([+-]?\d+)\s*\Z")
_YES_NO = re.compile(r"\A\s*(yes|no)\s*[.!]?\s*\Z", re.IGNORECASE)


class OutputParseError(ValueError):
    """The output does not follow the required format (a generic reason)."""


@dataclass(frozen=True, slots=True)
class Group:
    """A top-level bracket group: its content and where it lies in the output.

    ``start``/``end`` delimit the content (inside the brackets) in the
    original output string, for aligning with generated tokens.
    """

    content: str
    start: int
    end: int


def bracket_groups(text: str) -> list[Group]:
    """The top-level ``[...]`` groups of ``text``, or OutputParseError."""
    base = 0
    fence = _FENCE.match(text)
    if fence:
        base = fence.start("body")
        body = fence.group("body")
    else:
        body = text
    groups: list[Group] = []
    depth = 0
    opened = -1
    for i, ch in enumerate(body):
        if ch == "[":
            if depth == 0:
                opened = i
            depth += 1
        elif ch == "]":
            if depth == 0:
                raise OutputParseError("unbalanced ']'")
            depth -= 1
            if depth == 0:
                groups.append(Group(body[opened + 1 : i], base + opened + 1, base + i))
        elif depth == 0 and not ch.isspace():
            raise OutputParseError("text outside the bracketed fields")
    if depth:
        raise OutputParseError("unclosed '['")
    if not groups:
        raise OutputParseError("no bracketed answer")
    return groups


def expect_groups(text: str, n: int) -> list[Group]:
    """Exactly ``n`` groups (1 = ``[answer]``, 2 = ``[reasoning][answer]``)."""
    groups = bracket_groups(text)
    if len(groups) != n:
        what = "answer" if n == 1 else "reasoning and answer"
        raise OutputParseError(f"expected {n} bracketed field(s) ({what}), got {len(groups)}")
    if n == 2 and not groups[0].content.strip():
        raise OutputParseError("empty reasoning")
    return groups


def parse_index(content: str, n_labels: int) -> int:
    """A label index in ``[0, n_labels)``."""
    m = _INDEX.match(content)
    if not m:
        raise OutputParseError("the answer is not a label index")
    index = int(m.group(1))
    if index >= n_labels:
        raise OutputParseError(f"label index {index} out of range 0..{n_labels - 1}")
    return index


def parse_probability(content: str) -> float:
    """A probability in ``[0, 1]`` written as a decimal number."""
    m = _NUMBER.match(content)
    if not m:
        raise OutputParseError("the answer is not a decimal probability")
    value = float(m.group(1))
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise OutputParseError(f"probability {value:g} outside [0, 1]")
    return value


def parse_level(content: str) -> int:
    """An error level 1..5 (multiple choice)."""
    m = _LEVEL.match(content)
    if not m:
        raise OutputParseError("the answer is not an error level")
    level = int(m.group(1))
    if not 1 <= level <= 5:
        raise OutputParseError(f"error level {level} outside 1..5")
    return level


def parse_yes_no(content: str) -> bool:
    """True for yes (there is an error), False for no."""
    m = _YES_NO.match(content)
    if not m:
        raise OutputParseError("the answer is not yes or no")
    return m.group(1).lower() == "yes"


def yes_no_span(content: str, offset: int = 0) -> tuple[int, int]:
    """Where the yes/no word lies in ``content`` (shifted by ``offset``)."""
    m = _YES_NO.match(content)
    if not m:
        raise OutputParseError("the answer is not yes or no")
    return offset + m.start(1), offset + m.end(1)


def value_span(content: str, offset: int = 0) -> tuple[int, int]:
    """Where the non-blank part of ``content`` lies (shifted by ``offset``)."""
    stripped = content.strip()
    start = content.index(stripped) if stripped else 0
    return offset + start, offset + start + len(stripped)
