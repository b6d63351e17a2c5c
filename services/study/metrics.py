"""The study's measurements with percentile bootstrap 95% intervals.

Figure 2: annotation accuracy per model and prompt strategy. Figure 3: ABS
(:func:`services.core.metrics.abs_score`) per black-box strategy and
(annotator, critic) pair. Figure 4: per pair, the best black-box against the
best white-box strategy. Every interval resamples the *items* (Efron &
Tibshirani's percentile interval, :mod:`services.core.bootstrap`); comparisons
resample both sides on the same items, which is what a paired difference
needs.

Failed calls count as in ``run_selection``: an item a model failed to label
is wrong (label -1) and gets eps = 1 from every critic (it must be
reviewed); a failed critique gets eps = 0.5 (no information).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.core.bootstrap import Interval, percentile_interval
from services.core.metrics import abs_score
from services.study.plan import CRITIC_STRATEGIES, StudyConfig, critique_pairs
from services.study.records import PhaseRecord, RecordStore

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Stat = Callable[[IntArray], float]


@dataclass(frozen=True, slots=True)
class Usage:
    """What one (role, model, strategy) cell cost over the run's items."""

    role: str
    model: str
    strategy: str
    calls: int
    failures: int
    prompt_tokens: float  # mean per call
    completion_tokens: float  # mean per call


@dataclass(frozen=True)
class StudyData:
    """Everything the report needs, on the run's items (pure data, no I/O)."""

    profiles: tuple[str, ...]
    annotation_strategies: tuple[str, ...]
    critic_strategies: tuple[str, ...]
    base_model: str
    base_annotation: str
    item_ids: tuple[str, ...]
    human: IntArray
    labels: dict[tuple[str, str], IntArray]  # (model, annotation strategy)
    eps: dict[tuple[str, str, str], FloatArray]  # (annotator, critic, critic strategy)
    usage: tuple[Usage, ...] = ()
    phases: tuple[PhaseRecord, ...] = ()
    failures: dict[tuple[str, str], int] = field(default_factory=dict)


def assemble(
    config: StudyConfig,
    store: RecordStore,
    item_ids: Sequence[str],
    human: IntArray,
    base_model: str,
) -> StudyData:
    """Label and eps arrays of the run's items from the recorded calls."""
    wanted = set(item_ids)
    labels: dict[tuple[str, str], IntArray] = {}
    failures: dict[tuple[str, str], int] = {}
    for m in config.profiles:
        for a in config.annotation_strategies:
            row = np.array(
                [_label(store, ("annotate", m, a, "", "", i)) for i in item_ids], dtype=np.int64
            )
            labels[(m, a)] = row
            failures[(m, a)] = int((row < 0).sum())
    eps: dict[tuple[str, str, str], FloatArray] = {}
    # Only the grid's pairs: calibration also criticised non-base models' own
    # labels on its few items, which is no cell of the run.
    critiqued = [
        (annotator, critic, strategy)
        for annotator, critic in critique_pairs(config, base_model)
        for strategy in config.critic_strategies
    ]
    for annotator, critic, strategy in sorted(critiqued):
        base = labels[(annotator, config.base_annotation)]
        values = []
        for i, label in zip(item_ids, base, strict=True):
            rec = store.calls.get(
                ("critique", critic, strategy, annotator, config.base_annotation, i)
            )
            if label < 0:
                values.append(1.0)
            elif rec is None or not rec.ok or rec.eps is None:
                values.append(0.5)
            else:
                values.append(float(rec.eps))
        eps[(annotator, critic, strategy)] = np.asarray(values, dtype=np.float64)
    return StudyData(
        profiles=config.profiles,
        annotation_strategies=config.annotation_strategies,
        critic_strategies=config.critic_strategies,
        base_model=base_model,
        base_annotation=config.base_annotation,
        item_ids=tuple(item_ids),
        human=np.asarray(human, dtype=np.int64),
        labels=labels,
        eps=eps,
        usage=tuple(_usage(store, wanted, set(critique_pairs(config, base_model)))),
        phases=tuple(store.phases),
        failures=failures,
    )


def _label(store: RecordStore, key: tuple[str, ...]) -> int:
    rec = store.calls.get(key)
    return rec.label if rec is not None and rec.ok else -1


def _usage(store: RecordStore, wanted: set[str], pairs: set[tuple[str, str]]) -> list[Usage]:
    """Tokens and failures of the run's cells (its items, and critiques of its pairs)."""
    cells: dict[tuple[str, str, str], list[tuple[int, int, bool]]] = {}
    for r in store:
        in_grid = r.role == "annotate" or (r.annotator, r.model) in pairs
        if r.item_id in wanted and in_grid:
            cells.setdefault((r.role, r.model, r.strategy), []).append(
                (r.prompt_tokens, r.completion_tokens, r.ok)
            )
    out = []
    for (role, model, strategy), rows in sorted(cells.items()):
        ok = [(p, c) for p, c, good in rows if good] or [(0, 0)]
        out.append(
            Usage(
                role,
                model,
                strategy,
                len(rows),
                sum(not g for *_, g in rows),
                float(np.mean([p for p, _ in ok])),
                float(np.mean([c for _, c in ok])),
            )
        )
    return out


# --- statistics over resampled item indices ---------------------------------


def accuracy_stat(labels: IntArray, human: IntArray) -> Stat:
    """Accuracy of ``labels`` on the resampled items."""
    return lambda idx: float(np.mean(labels[idx] == human[idx]))


def abs_stat(labels: IntArray, human: IntArray, eps: FloatArray) -> Stat:
    """ABS on the resampled items; NaN for a resample without machine errors (dropped)."""

    def stat(idx: IntArray) -> float:
        m, h = labels[idx], human[idx]
        if not np.any(m != h):
            return float("nan")
        return abs_score(m, h, eps[idx])

    return stat


def diff_stat(a: Stat, b: Stat) -> Stat:
    """a - b on the same resampled items (a paired difference)."""
    return lambda idx: a(idx) - b(idx)


def best_stat(stats: Sequence[Stat]) -> Stat:
    """The best of several statistics, chosen again in every resample (NaN-aware)."""

    def stat(idx: IntArray) -> float:
        values = [s(idx) for s in stats]
        finite = [v for v in values if not np.isnan(v)]
        return max(finite) if finite else float("nan")

    return stat


# --- the tables ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccuracyRow:
    """Figure 2: one model with one annotation strategy."""

    model: str
    strategy: str
    accuracy: Interval
    failures: int


@dataclass(frozen=True, slots=True)
class AbsRow:
    """Figures 3/4: one critic strategy on one (annotator, critic) pair."""

    annotator: str
    critic: str
    strategy: str
    white_box: bool
    abs: Interval

    @property
    def self_criticism(self) -> bool:
        """The annotator criticises its own labels."""
        return self.annotator == self.critic


@dataclass(frozen=True, slots=True)
class BoxRow:
    """Figure 4: the best black-box and the best white-box strategy of one pair."""

    annotator: str
    critic: str
    best_black: str
    black: Interval
    best_white: str
    white: Interval
    white_minus_black: Interval  # the best of each chosen again per resample


@dataclass(frozen=True)
class Tables:
    """All the study's tables."""

    accuracy: tuple[AccuracyRow, ...]
    abs: tuple[AbsRow, ...]
    boxes: tuple[BoxRow, ...]


class Bootstrapper:
    """Percentile intervals over the study's items, all from one seed."""

    def __init__(self, n_items: int, resamples: int, seed: int) -> None:
        self.n = n_items
        self.resamples = resamples
        self.seed = seed

    def interval(self, stat: Stat) -> Interval:
        """The statistic's estimate and 95% interval.

        Every call draws the same resamples (same seed), so intervals of
        different cells are computed on the same resampled item sets.
        """
        return percentile_interval(stat, self.n, resamples=self.resamples, seed=self.seed)


def abs_stats(data: StudyData) -> dict[tuple[str, str, str], Stat]:
    """ABS statistic of every (annotator, critic, strategy) cell that ran."""
    out = {}
    for (annotator, critic, strategy), eps in data.eps.items():
        labels = data.labels[(annotator, data.base_annotation)]
        out[(annotator, critic, strategy)] = abs_stat(labels, data.human, eps)
    return out


def compute_tables(data: StudyData, boot: Bootstrapper) -> Tables:
    """Figures 2, 3 and 4 as rows with intervals."""
    acc = tuple(
        AccuracyRow(
            m,
            a,
            boot.interval(accuracy_stat(data.labels[(m, a)], data.human)),
            data.failures.get((m, a), 0),
        )
        for m in data.profiles
        for a in data.annotation_strategies
    )
    stats = abs_stats(data)
    rows = tuple(
        AbsRow(a, c, s, CRITIC_STRATEGIES[s].white_box, boot.interval(stat))
        for (a, c, s), stat in sorted(
            stats.items(),
            key=lambda kv: (
                data.profiles.index(kv[0][0]),
                data.profiles.index(kv[0][1]),
                _order(kv[0][2]),
            ),
        )
    )
    boxes = []
    for a, c in dict.fromkeys((r.annotator, r.critic) for r in rows):
        black = [r for r in rows if (r.annotator, r.critic) == (a, c) and not r.white_box]
        white = [r for r in rows if (r.annotator, r.critic) == (a, c) and r.white_box]
        if not black or not white:
            continue
        b = max(black, key=lambda r: _finite(r.abs.estimate))
        w = max(white, key=lambda r: _finite(r.abs.estimate))
        diff = diff_stat(
            best_stat([stats[(a, c, r.strategy)] for r in white]),
            best_stat([stats[(a, c, r.strategy)] for r in black]),
        )
        boxes.append(BoxRow(a, c, b.strategy, b.abs, w.strategy, w.abs, boot.interval(diff)))
    return Tables(acc, rows, tuple(boxes))


def _order(strategy: str) -> int:
    return list(CRITIC_STRATEGIES).index(strategy)


def _finite(value: float) -> float:
    return -1.0 if np.isnan(value) else value


@dataclass(frozen=True, slots=True)
class Throughput:
    """Speed and cost of one (role, model, strategy) cell over the whole run."""

    role: str
    model: str
    strategy: str
    calls: int
    items_per_s: float
    tokens_per_item: float  # prompt + completion, per call
    prompt_tokens: float
    completion_tokens: float
    cache_hit_share: float | None  # None: the server does not report it
    failures: int


def throughput(data: StudyData) -> tuple[Throughput, ...]:
    """Items/s from the phases' wall time, tokens from the calls, cache reuse if reported."""
    out = []
    for u in data.usage:
        phases = [
            p for p in data.phases if (p.role, p.model, p.strategy) == (u.role, u.model, u.strategy)
        ]
        wall = sum(p.wall_s for p in phases)
        calls = sum(p.n_calls for p in phases)
        measured = [p for p in phases if p.cache_hit_tokens is not None]
        prompt = sum(p.prompt_tokens for p in measured)
        share = (
            sum(p.cache_hit_tokens or 0 for p in measured) / prompt
            if measured and prompt > 0
            else None
        )
        out.append(
            Throughput(
                u.role,
                u.model,
                u.strategy,
                u.calls,
                calls / wall if wall > 0 else float("nan"),
                u.prompt_tokens + u.completion_tokens,
                u.prompt_tokens,
                u.completion_tokens,
                share,
                u.failures,
            )
        )
    return tuple(out)
