"""Model selection, the paper's guideline (section 4.3), as pure functions.

"We recommend: (1) obtaining a small test set of human-annotated samples;
(2) evaluating annotation ability across available MLLMs; and (3) selecting
the best model as the annotator and the second-best as the criticizer."
The paper observes that annotation and criticism abilities are positively
correlated and that this choice achieves the best criticism ABS across its
data sets (Figure 5). The human budget then follows appendix F.2: the ideal
budget is the chosen annotator's error rate, plus a buffer of 10 points.

Inputs are the candidates' labels on the small human-labelled set and, for
each (annotator, critic) pair that was run, the critic's eps on that
annotator's labels. Running the models is :mod:`services.evaluation.candidates`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from services.core.metrics import (
    DEFAULT_BUDGET_BUFFER,
    Labels,
    Scores,
    abs_score,
    accuracy,
    ideal_budget,
    recommended_budget,
)


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One candidate's annotation ability on the human-labelled set."""

    name: str
    accuracy: float
    failures: int = 0  # items it could not label (counted as wrong)


@dataclass(frozen=True, slots=True)
class PairScore:
    """The criticism ability of ``critic`` on ``annotator``'s labels (ABS, eq. 5)."""

    annotator: str
    critic: str
    abs: float

    @property
    def self_criticism(self) -> bool:
        """The same model annotates and criticises."""
        return self.annotator == self.critic


@dataclass(frozen=True, slots=True)
class SelectionReport:
    """What ``act select-models`` reports."""

    n_items: int
    candidates: tuple[CandidateScore, ...]  # best first
    pairs: tuple[PairScore, ...]  # by ABS, best first
    annotator: str
    critic: str | None  # None with a single candidate
    ideal_budget: float
    recommended_budget: float
    budget_buffer: float
    recommended_pair_abs: float | None = None
    best_abs_pair: PairScore | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``--json``)."""
        out = asdict(self)
        out["pairs"] = [dict(asdict(p), self_criticism=p.self_criticism) for p in self.pairs]
        if self.best_abs_pair is not None:
            out["best_abs_pair"] = dict(
                asdict(self.best_abs_pair), self_criticism=self.best_abs_pair.self_criticism
            )
        out["notes"] = list(self.notes)
        return out


def rank_candidates(
    labels: Mapping[str, Labels], human: Labels, failures: Mapping[str, int] | None = None
) -> list[CandidateScore]:
    """Candidates by annotation accuracy, best first (ties keep the input order)."""
    failures = failures or {}
    scores = [
        CandidateScore(name, accuracy(predicted, human), int(failures.get(name, 0)))
        for name, predicted in labels.items()
    ]
    return sorted(scores, key=lambda s: -s.accuracy)  # sorted() is stable


def score_pairs(
    labels: Mapping[str, Labels], eps: Mapping[tuple[str, str], Scores], human: Labels
) -> list[PairScore]:
    """ABS of every (annotator, critic) pair with eps, best first (ties: input order)."""
    pairs = []
    for (annotator, critic), scores in eps.items():
        if annotator not in labels:
            raise ValueError(f"eps given for unknown annotator {annotator!r}")
        pairs.append(PairScore(annotator, critic, abs_score(labels[annotator], human, scores)))
    return sorted(pairs, key=lambda p: -p.abs)


def recommend(ranked: Sequence[CandidateScore]) -> tuple[str, str | None]:
    """Best = annotator, second best = criticizer (paper, section 4.3)."""
    if not ranked:
        raise ValueError("no candidates")
    return ranked[0].name, ranked[1].name if len(ranked) > 1 else None


def select_models(
    labels: Mapping[str, Labels],
    human: Labels,
    eps: Mapping[tuple[str, str], Scores] | None = None,
    *,
    failures: Mapping[str, int] | None = None,
    buffer: float = DEFAULT_BUDGET_BUFFER,
) -> SelectionReport:
    """Rank the candidates, recommend annotator and critic, and size the human budget.

    ``labels``: each candidate's labels on the human-labelled set (``-1`` for
    an item it failed to label); ``eps``: for the (annotator, critic) pairs that
    were run, the critic's error probabilities on the annotator's labels.
    """
    human_arr = np.asarray(human, dtype=np.int64)
    ranked = rank_candidates(labels, human_arr, failures)
    annotator, critic = recommend(ranked)
    pairs = score_pairs(labels, eps or {}, human_arr)
    by_key = {(p.annotator, p.critic): p for p in pairs}
    recommended = by_key.get((annotator, critic)) if critic else None
    ideal = ideal_budget(labels[annotator], human_arr)
    notes: list[str] = []
    if critic is None:
        notes.append("only one candidate: it is the annotator; self-criticism is the only option")
    best = pairs[0] if pairs else None
    if best is not None and recommended is not None and best.abs > recommended.abs:
        notes.append(
            f"on this set the pair ({best.annotator}, {best.critic}) has a higher ABS "
            f"({best.abs:.3f}) than the recommended one ({recommended.abs:.3f}); with a "
            "small set this can be noise; the guideline ranks by annotation accuracy"
        )
    return SelectionReport(
        n_items=int(human_arr.size),
        candidates=tuple(ranked),
        pairs=tuple(pairs),
        annotator=annotator,
        critic=critic,
        ideal_budget=ideal,
        recommended_budget=recommended_budget(ideal, buffer),
        budget_buffer=buffer,
        recommended_pair_abs=recommended.abs if recommended else None,
        best_abs_pair=best,
        notes=tuple(notes),
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def render_report(report: SelectionReport) -> str:
    """The human-readable report: candidates, pairs, recommendation and budgets."""
    roles = {report.annotator: "annotator"}
    if report.critic:
        roles[report.critic] = "criticizer"
    cand_rows = [
        [str(i), c.name, f"{100 * c.accuracy:.2f}%", str(c.failures), roles.get(c.name, "")]
        for i, c in enumerate(report.candidates, start=1)
    ]
    parts = [
        f"Annotation accuracy on {report.n_items} human-labelled items:",
        _table(["RANK", "CANDIDATE", "ACCURACY", "FAILED", "ROLE"], cand_rows),
    ]
    if report.pairs:
        pair_rows = [
            [
                p.annotator,
                p.critic,
                f"{100 * p.abs:.2f}%",
                "self" if p.self_criticism else "cross",
                "*" if (p.annotator, p.critic) == (report.annotator, report.critic) else "",
            ]
            for p in report.pairs
        ]
        parts += [
            "",
            "Criticism ABS of annotator-critic pairs (higher is better; * = recommended):",
            _table(["ANNOTATOR", "CRITIC", "ABS", "KIND", ""], pair_rows),
        ]
    parts += [
        "",
        f"Recommended annotator:  {report.annotator}",
        f"Recommended criticizer: {report.critic or '(none: a single candidate)'}",
        f"Ideal budget:       {100 * report.ideal_budget:.2f}% (the annotator's error rate)",
        f"Recommended budget: {100 * report.recommended_budget:.2f}% "
        f"(ideal + {100 * report.budget_buffer:.0f} points)",
    ]
    parts += [f"note: {n}" for n in report.notes]
    return "\n".join(parts)
