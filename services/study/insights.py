"""The paper's seven insights (section 4), each decided by paired bootstrap intervals.

A verdict is "held" or "not held" only where a paired difference's 95%
interval excludes 0 in the direction the insight needs; otherwise it is
"inconclusive" (the run cannot tell), or "not testable" where the run has
no data for it (no black-box API model runs offline). Where an insight is
about the *best* strategy or model, the best is chosen again inside every
resample, so the interval includes the selection (no winner's curse).
A best-of comparison between groups of unequal size still favours the
larger group a little (Figure 4: four black-box against three white-box
strategies); the report's tables give every cell for a reader who wants the
strategy-by-strategy view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.core.bootstrap import Interval
from services.study.metrics import (
    Bootstrapper,
    Stat,
    StudyData,
    Tables,
    abs_stats,
    accuracy_stat,
    best_stat,
    diff_stat,
)
from services.study.plan import CRITIC_STRATEGIES

HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE = "held", "not held", "inconclusive", "not testable"


@dataclass(frozen=True, slots=True)
class Insight:
    """One insight's verdict, the figure that decides it and why."""

    number: int
    claim: str
    verdict: str
    figure: str
    evidence: str


def _pp(ci: Interval) -> str:
    return f"{100 * ci.estimate:+.1f} pp [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]"


def _mean_stat(stats: Sequence[Stat]) -> Stat:
    return lambda idx: float(np.mean([s(idx) for s in stats]))


def insight_1(data: StudyData, boot: Bootstrapper) -> Insight:
    """The strongest model (GPT-4o there, the largest profile here) annotates best."""
    claim = "The strongest model is the best annotator (GPT-4o there; the largest model here)."
    strongest = data.profiles[-1]
    if len(data.profiles) < 2:
        return Insight(1, claim, NOT_TESTABLE, "Figure 2", "one model only")

    def best(m: str) -> Stat:
        return best_stat(
            [accuracy_stat(data.labels[(m, a)], data.human) for a in data.annotation_strategies]
        )

    diffs = {m: boot.interval(diff_stat(best(strongest), best(m))) for m in data.profiles[:-1]}
    signs = [ci.sign() for ci in diffs.values()]
    verdict = (
        HELD
        if all(s > 0 for s in signs)
        else NOT_HELD
        if any(s < 0 for s in signs)
        else (INCONCLUSIVE)
    )
    evidence = "; ".join(f"{strongest} - {m}: {_pp(ci)}" for m, ci in diffs.items())
    return Insight(1, claim, verdict, "Figure 2", f"best-strategy accuracy, {evidence}")


def insight_2(data: StudyData, boot: Bootstrapper) -> Insight:
    """CoT is not consistently helpful with annotation."""
    claim = "CoT is not consistently helpful with annotation."
    if not {"naive", "cot"} <= set(data.annotation_strategies):
        return Insight(2, claim, NOT_TESTABLE, "Figure 2", "needs naive and cot annotation")
    diffs = {
        m: boot.interval(
            diff_stat(
                accuracy_stat(data.labels[(m, "cot")], data.human),
                accuracy_stat(data.labels[(m, "naive")], data.human),
            )
        )
        for m in data.profiles
    }
    signs = [ci.sign() for ci in diffs.values()]
    if all(s > 0 for s in signs):
        verdict = NOT_HELD  # CoT helps every model
    elif any(s < 0 for s in signs) or (any(s > 0 for s in signs)):
        verdict = HELD  # CoT hurts a model, or helps some and not others
    else:
        verdict = INCONCLUSIVE
    evidence = "; ".join(f"{m} cot - naive: {_pp(ci)}" for m, ci in diffs.items())
    return Insight(2, claim, verdict, "Figure 2", evidence)


def _black_box(data: StudyData) -> list[str]:
    return [s for s in data.critic_strategies if not CRITIC_STRATEGIES[s].white_box]


def insight_3(data: StudyData, boot: Bootstrapper) -> Insight:
    """Cross-criticism beats self-criticism with black-box strategies.

    Each cross critic is compared with the self critic on equal terms, the
    best of the same black-box strategies on each side; pooling both cross
    critics into one maximum would favour cross-criticism by having twice
    as many chances at a lucky cell.
    """
    claim = "Cross-criticism outperforms self-criticism with black-box strategies."
    stats = abs_stats(data)
    base = data.base_model
    black = _black_box(data)

    def best(critic: str) -> Stat | None:
        cells = [stats[(base, critic, s)] for s in black if (base, critic, s) in stats]
        return best_stat(cells) if cells else None

    own = best(base)
    cross = {c: b for c in data.profiles if c != base and (b := best(c)) is not None}
    if own is None or not cross:
        return Insight(3, claim, NOT_TESTABLE, "Figure 3", "needs self and cross critiques")
    diffs = {c: boot.interval(diff_stat(b, own)) for c, b in cross.items()}
    signs = [ci.sign() for ci in diffs.values()]
    if any(s > 0 for s in signs) and not any(s < 0 for s in signs):
        verdict = HELD
    elif any(s < 0 for s in signs) and not any(s > 0 for s in signs):
        verdict = NOT_HELD
    else:
        verdict = INCONCLUSIVE
    evidence = "; ".join(
        f"critic {c} - self ({base}), best black-box ABS: {_pp(ci)}" for c, ci in diffs.items()
    )
    return Insight(3, claim, verdict, "Figure 3", evidence)


def insight_4() -> Insight:
    """Black-box (API) models are better critics: no API model runs offline."""
    return Insight(
        4,
        "Black-box (API) models are better criticizers than white-box ones.",
        NOT_TESTABLE,
        "Figure 3",
        "every model here is a local open-weight (white-box) model; no black-box API model "
        "can run offline, so the comparison has one side only",
    )


def insight_5(data: StudyData, boot: Bootstrapper) -> Insight:
    """CoT helps criticism more than annotation."""
    claim = "CoT is more helpful with criticism than with annotation."
    stats = abs_stats(data)
    base = data.base_model
    critics = [
        c for c in data.profiles if (base, c, "cot") in stats and (base, c, "naive") in stats
    ]
    if not critics or not {"naive", "cot"} <= set(data.annotation_strategies):
        return Insight(5, claim, NOT_TESTABLE, "Figures 2 and 3", "needs naive and cot of both")
    critic_gain = _mean_stat(
        [diff_stat(stats[(base, c, "cot")], stats[(base, c, "naive")]) for c in critics]
    )
    annot_gain = _mean_stat(
        [
            diff_stat(
                accuracy_stat(data.labels[(m, "cot")], data.human),
                accuracy_stat(data.labels[(m, "naive")], data.human),
            )
            for m in data.profiles
        ]
    )
    gain_ci = boot.interval(critic_gain)
    ci = boot.interval(diff_stat(critic_gain, annot_gain))
    verdict = {1: HELD, -1: NOT_HELD, 0: INCONCLUSIVE}[ci.sign()]
    return Insight(
        5,
        claim,
        verdict,
        "Figures 2 and 3",
        f"mean ABS gain of cot over naive criticism {_pp(gain_ci)}; minus the mean accuracy "
        f"gain of cot over naive annotation: {_pp(ci)}",
    )


def insight_6(tables: Tables, base: str) -> Insight:
    """White-box strategies can occasionally beat black-box ones."""
    claim = "White-box strategies can occasionally enhance criticism performance."
    rows = [b for b in tables.boxes if b.annotator == base]
    if not rows:
        return Insight(6, claim, NOT_TESTABLE, "Figure 4", "needs black- and white-box cells")
    signs = [b.white_minus_black.sign() for b in rows]
    verdict = (
        HELD
        if any(s > 0 for s in signs)
        else NOT_HELD
        if all(s < 0 for s in signs)
        else (INCONCLUSIVE)
    )
    evidence = "; ".join(
        f"critic {b.critic}: best white - best black {_pp(b.white_minus_black)}" for b in rows
    )
    return Insight(6, claim, verdict, "Figure 4", evidence)


def insight_7(tables: Tables, base: str) -> Insight:
    """White-box strategies do not consistently beat black-box ones."""
    claim = "White-box strategies do not consistently outperform black-box strategies."
    rows = [b for b in tables.boxes if b.annotator == base]
    if not rows:
        return Insight(7, claim, NOT_TESTABLE, "Figure 4", "needs black- and white-box cells")
    signs = [b.white_minus_black.sign() for b in rows]
    if all(s > 0 for s in signs):
        verdict = NOT_HELD  # white-box wins for every critic
    elif any(s < 0 for s in signs):
        verdict = HELD  # black-box is better for at least one critic
    else:
        verdict = INCONCLUSIVE
    n_white = sum(s > 0 for s in signs)
    return Insight(
        7,
        claim,
        verdict,
        "Figure 4",
        f"white-box significantly better for {n_white} of {len(rows)} critics, significantly "
        f"worse for {sum(s < 0 for s in signs)} (intervals in the Figure 4 table)",
    )


def all_insights(data: StudyData, tables: Tables, boot: Bootstrapper) -> tuple[Insight, ...]:
    """The seven verdicts in the paper's order."""
    return (
        insight_1(data, boot),
        insight_2(data, boot),
        insight_3(data, boot),
        insight_4(),
        insight_5(data, boot),
        insight_6(tables, data.base_model),
        insight_7(tables, data.base_model),
    )
