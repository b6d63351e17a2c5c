"""What a Table-3 run measured: one :class:`MethodRun` per trained model, a :class:`TableResult`."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from services.experiments.methods import (
    ACT_DATA_CE,
    ACT_EXP,
    ACT_NORM,
    ACT_THRE,
    HUMAN_ONLY,
    MACHINE_ONLY,
    REVIEWED_ONLY,
    Method,
    TableConfig,
)


@dataclass(frozen=True, slots=True)
class MethodRun:
    """One trained model: a method at a budget and seed."""

    method: str
    seed: int
    budget: float
    test_accuracy: float
    val_accuracy: float
    learning_rate: float
    power_lambda: float
    beta: float | None  # exponential weighting only
    reviewed: int
    min_pi_reviewed: float
    seconds: float
    searched: bool


@dataclass
class TableResult:
    """Everything a Table-3 run measured."""

    dataset: str
    model: str
    n_train: int
    n_val: int
    n_test: int
    seeds: int
    budget: float  # fraction of the training items
    ideal_budget: float
    annotator_accuracy: float
    annotator: str
    critic: str
    seed_size: int
    aqg_at_budget: float
    corrected_accuracy: float  # annotation accuracy of the ACT data at the budget
    aqg_curve: list[float]  # AQG at budgets 0..N (services.core.metrics.budget_curve)
    runs: list[MethodRun]
    methods: list[Method]
    config: TableConfig
    seconds: float = 0.0
    #: Resolved training settings (the config's None = the model's defaults).
    epochs: int = 0
    batch_size: int = 0
    learning_rates: tuple[float, ...] = ()

    def accuracies(self, method: str, budget: float | None = None) -> list[float]:
        """Test accuracies (%) of a method over seeds, at the table's budget by default."""
        b = self.budget if budget is None else budget
        return [
            100.0 * r.test_accuracy
            for r in self.runs
            if r.method == method and math.isclose(r.budget, b, abs_tol=1e-12)
        ]

    def mean(self, method: str, budget: float | None = None) -> float:
        """Mean test accuracy (%) over seeds."""
        values = self.accuracies(method, budget)
        return statistics.fmean(values) if values else float("nan")

    def std(self, method: str, budget: float | None = None) -> float:
        """Sample standard deviation (ddof = 1) of the test accuracy (%) over seeds."""
        values = self.accuracies(method, budget)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def gap(self, method: str) -> float:
        """Human-only minus ``method`` (accuracy points), mean over seeds."""
        return self.mean(HUMAN_ONLY.key) - self.mean(method)

    def val_mean(self, method: str) -> float:
        """Mean validation accuracy (%) over seeds at the table's budget (selection only)."""
        values = [
            100.0 * r.val_accuracy
            for r in self.runs
            if r.method == method and math.isclose(r.budget, self.budget, abs_tol=1e-12)
        ]
        return statistics.fmean(values) if values else float("nan")

    def recommended(self) -> Method | None:
        """The candidate row with the best mean validation accuracy (never test accuracy).

        Candidates are the methods a user can run (:attr:`Method.candidate`):
        the ACT losses and the methods beyond the paper, not the references
        (human-only, oracle critic) or the baselines. Ties: the earlier row.
        """
        best: Method | None = None
        for m in self.methods:
            score = self.val_mean(m.key)
            if (
                m.candidate
                and not math.isnan(score)
                and (best is None or score > self.val_mean(best.key))
            ):
                best = m
        return best

    def paired_differences(self, method: str, against: str) -> list[float]:
        """Per-seed test accuracy of ``method`` minus ``against`` (points), seeds both ran."""
        by_seed = {
            r.seed: 100.0 * r.test_accuracy
            for r in self.runs
            if r.method == against and math.isclose(r.budget, self.budget, abs_tol=1e-12)
        }
        return [
            100.0 * r.test_accuracy - by_seed[r.seed]
            for r in sorted(self.runs, key=lambda r: r.seed)
            if r.method == method
            and r.seed in by_seed
            and math.isclose(r.budget, self.budget, abs_tol=1e-12)
        ]

    def summary(self, prefix: str | None = None) -> dict[str, float]:
        """Flat metrics, e.g. ``fashion_gap_human_act_thre`` (accuracy points, % for budgets)."""
        p = f"{prefix or self.dataset}_"
        out: dict[str, float] = {
            f"{p}gap_human_act_thre": self.gap(ACT_THRE.key),
            f"{p}gap_human_act_exp": self.gap(ACT_EXP.key),
            f"{p}gap_human_act_norm": self.gap(ACT_NORM.key),
            f"{p}gap_human_machine": self.gap(MACHINE_ONLY.key),
            f"{p}gap_human_act_data_ce": self.gap(ACT_DATA_CE.key),
            # The paper's "Human-ACT performance gap": the better of exp. and thre.
            f"{p}gap_human_act": min(self.gap(ACT_EXP.key), self.gap(ACT_THRE.key)),
            # Training on the reviewed items alone: the baseline ACT must beat.
            **(
                {f"{p}gap_human_reviewed_only": self.gap(REVIEWED_ONLY.key)}
                if any(m.key == REVIEWED_ONLY.key for m in self.methods)
                else {}
            ),
            f"{p}budget": 100.0 * self.budget,
            f"{p}annotator_accuracy": 100.0 * self.annotator_accuracy,
            f"{p}aqg_at_budget": 100.0 * self.aqg_at_budget,
            f"{p}seconds": self.seconds,
        }
        for m in self.methods:
            out[f"{p}acc_{m.key}_mean"] = self.mean(m.key)
            out[f"{p}acc_{m.key}_std"] = self.std(m.key)
            if m.key not in (HUMAN_ONLY.key, MACHINE_ONLY.key):
                out.setdefault(f"{p}gap_human_{m.key}", self.gap(m.key))
        if self.config.plus_budget is not None:
            plus = min(1.0, self.budget + self.config.plus_budget)
            points = round(100 * self.config.plus_budget)
            for key in self.config.plus_methods:
                if self.accuracies(key, plus):
                    out[f"{p}gap_human_{key}_plus{points}"] = self.mean(HUMAN_ONLY.key) - self.mean(
                        key, plus
                    )
        best = self.recommended()
        if best is not None:
            # The recommended row, chosen on validation accuracy; its index in
            # the table's rows says which (summary values are numbers).
            out[f"{p}gap_human_act_best"] = self.gap(best.key)
            out[f"{p}best_row"] = float(self.methods.index(best))
        return out
