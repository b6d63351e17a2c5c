"""The paper's evaluation of the annotation stage, as pure functions.

:mod:`~services.evaluation.metrics` (accuracy, AQG, ABS, budgets),
:mod:`~services.evaluation.baselines` (random and oracle critics),
:mod:`~services.evaluation.selection` (model selection, section 4.3).
"""

from services.evaluation.baselines import oracle_critic_eps, random_critic_eps
from services.evaluation.metrics import (
    DEFAULT_BUDGET_BUFFER,
    abs_score,
    accuracy,
    aqg,
    aqg_at_budget,
    budget_curve,
    budget_items,
    corrected_labels_at_budget,
    expected_corrections,
    ideal_budget,
    oracle_abs,
    random_abs_moments,
    recommended_budget,
    review_order,
)

__all__ = [
    "DEFAULT_BUDGET_BUFFER",
    "abs_score",
    "accuracy",
    "aqg",
    "aqg_at_budget",
    "budget_curve",
    "budget_items",
    "corrected_labels_at_budget",
    "expected_corrections",
    "ideal_budget",
    "oracle_abs",
    "oracle_critic_eps",
    "random_abs_moments",
    "random_critic_eps",
    "recommended_budget",
    "review_order",
]
