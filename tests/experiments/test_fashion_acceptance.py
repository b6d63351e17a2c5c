"""The issue's acceptance check on real Fashion-MNIST, kept small (3k items, 2 seeds).

Machine labels and eps come from the few-shot annotator/critic pair
(services.fewshot: logistic regression on pixels, critic on HOG features),
human labels from the data set. At the ideal budget (the annotator's error
rate) the ACT exponential and threshold losses must beat training on machine
labels; at a low budget (2%) the normalization rule must collapse below
machine-only, with reviewed items whose pi is close to 0 (Theorem 5.2's
q -> 0), while thresholding does not.

At 3,000 items ACT exp./thre. beat machine-only by about 4 points, but NOT
reliably plain cross-entropy on the ACT data (thresholding with lambda = 1 *is*
that loss, and validation often selects lambda = 1; paired over 10 seeds on
6,000 items: thre. +0.12 +- 0.07 points, exp. -0.86 +- 0.39). On the whole
training split, the paper's setting, both beat it on every seed, so that
comparison runs at full size (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import pytest

from services.experiments.annotations import fewshot_provider
from services.experiments.data import load_experiment_data
from services.experiments.methods import (
    ACT_DATA_CE,
    ACT_EXP,
    ACT_NORM,
    ACT_THRE,
    MACHINE_ONLY,
    TableConfig,
)
from services.experiments.results import TableResult
from services.experiments.table import compute_table

pytestmark = [pytest.mark.slow]

LOW_BUDGET = 0.02
CONFIG = TableConfig(epochs=4, lambdas=(0.6, 1.0), betas=(10.0, 100.0), workers=2)


@pytest.fixture(scope="module")
def tables() -> tuple[TableResult, TableResult]:
    data = load_experiment_data("fashion", 3000, n_val=500, n_test=3000)
    annotations = fewshot_provider()(data)
    ideal = compute_table(
        data,
        annotations,
        seeds=2,
        config=CONFIG,
        methods=[MACHINE_ONLY, ACT_DATA_CE, ACT_EXP, ACT_THRE],
    )
    low = compute_table(
        data,
        annotations,
        seeds=2,
        budget=LOW_BUDGET,
        config=CONFIG,
        methods=[MACHINE_ONLY, ACT_NORM, ACT_THRE],
    )
    return ideal, low


def test_act_exp_and_thre_beat_machine_only_at_the_ideal_budget(
    tables: tuple[TableResult, TableResult],
) -> None:
    ideal, _ = tables
    # The few-shot annotator is tuned to be about as good as GPT-4o on Fashion (78%).
    assert 0.70 <= ideal.annotator_accuracy <= 0.86
    assert ideal.budget == pytest.approx(1.0 - ideal.annotator_accuracy)
    machine = ideal.mean(MACHINE_ONLY.key)
    for method in (ACT_EXP, ACT_THRE):
        assert ideal.mean(method.key) >= machine + 2.0, (method.key, ideal.summary())


@pytest.fixture(scope="module")
def full_size() -> TableResult:
    """ACT-data CE vs the ACT losses on the whole training split (57,500 images), 3 seeds."""
    data = load_experiment_data("fashion", None, n_val=500, n_test=None)
    annotations = fewshot_provider()(data)
    config = TableConfig(epochs=4, lambdas=(0.6, 0.8, 1.0), include_reviewed_only=False,
                         workers=2)  # fmt: skip
    return compute_table(data, annotations, seeds=3, config=config,
                         methods=[ACT_DATA_CE, ACT_EXP, ACT_THRE])  # fmt: skip


def test_act_exp_and_thre_beat_act_data_cross_entropy_at_full_size(full_size: TableResult) -> None:
    # Seed by seed (same seed = same ACT data and initialisation for every method),
    # as the paper compares them; at 3,000 items the differences drown in seed noise,
    # at the paper's size they do not (measured over 4 seeds: exp. +1.04 +- 0.11
    # points, thre. +0.35 +- 0.06, every seed).
    ce = full_size.accuracies(ACT_DATA_CE.key)
    assert len(ce) == 3
    for method in (ACT_EXP, ACT_THRE):
        diffs = [a - c for a, c in zip(full_size.accuracies(method.key), ce, strict=True)]
        assert sum(diffs) / len(diffs) > 0.1, (method.key, diffs)
        assert sum(d > 0 for d in diffs) >= 2, (method.key, diffs)


def test_normalization_collapses_at_a_low_budget(tables: tuple[TableResult, TableResult]) -> None:
    _, low = tables
    machine, norm, thre = (low.mean(m.key) for m in (MACHINE_ONLY, ACT_NORM, ACT_THRE))
    assert norm <= machine - 3.0, low.summary()
    assert norm <= thre - 5.0, low.summary()
    assert thre >= machine, low.summary()
    # The mechanism (Theorem 5.2): normalization reviews items with pi near 0 (huge
    # weights 1/pi), thresholding only items with pi = 1.
    norm_q = min(r.min_pi_reviewed for r in low.runs if r.method == ACT_NORM.key)
    thre_q = min(r.min_pi_reviewed for r in low.runs if r.method == ACT_THRE.key)
    assert norm_q < 0.01 and thre_q == 1.0
