"""The pseudo-labelling baselines (paper, Table 7) with stand-in models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.experiments.pseudo import NONE, confident_labels, entropy, pseudo_labels

K = 4


def _world(n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """Human labels, and a stand-in model's probabilities: confident and right on
    60% of the items, unsure (uniform) on the rest."""
    rng = np.random.default_rng(seed)
    human = rng.integers(0, K, n)
    sure = rng.random(n) < 0.6
    proba = np.full((n, K), 1.0 / K)
    proba[sure] = 0.02
    proba[sure, human[sure]] = 1.0 - 0.02 * (K - 1)
    return human, sure, proba


def _stand_in(proba: np.ndarray, calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):  # type: ignore[no-untyped-def]
    def fit(train: np.ndarray, labels: np.ndarray, score: np.ndarray) -> np.ndarray:
        assert (labels[train] != NONE).all()  # trains on labelled items only
        calls.append((train.copy(), labels[train].copy(), score.copy()))
        return proba[score]

    return fit


def test_entropy_and_confident_labels() -> None:
    p = np.array([[0.25] * 4, [1.0, 0, 0, 0], [0.05, 0.95, 0, 0]])
    assert entropy(p) == pytest.approx(
        [math.log(4), 0.0, -(0.05 * math.log(0.05) + 0.95 * math.log(0.95))]
    )
    assert confident_labels(p, 0.9).tolist() == [NONE, 0, 1]
    with pytest.raises(ValueError, match="threshold"):
        confident_labels(p, 0.0)


def test_pseudo_labelling_spends_the_budget_at_random_and_labels_only_confident_items() -> None:
    human, sure, proba = _world(2000)
    calls: list = []
    run = pseudo_labels(human, 300, seed=1, fit_proba=_stand_in(proba, calls), iterations=2)
    assert run.reviewed.sum() == 300
    assert (run.labels[run.reviewed] == human[run.reviewed]).all()
    unlabelled = ~run.reviewed
    # Pseudo-labels exactly where the model is confident, and right there.
    assert np.array_equal(run.used[unlabelled], sure[unlabelled])
    assert (run.labels[unlabelled & sure] == human[unlabelled & sure]).all()
    assert run.pseudo == int((unlabelled & sure).sum())
    # The first fit sees the human labels only; the second also the pseudo-labels.
    assert len(calls) == 2
    assert set(calls[0][0]) == set(np.flatnonzero(run.reviewed))
    assert len(calls[1][0]) == 300 + run.pseudo
    # Uniformly random: the reviewed share of confident items matches theirs overall.
    assert abs(sure[run.reviewed].mean() - sure.mean()) < 0.1


def test_active_pseudo_labelling_spends_later_rounds_on_the_most_uncertain_items() -> None:
    human, sure, proba = _world(2000, seed=2)
    calls: list = []
    run = pseudo_labels(
        human, 600, seed=0, fit_proba=_stand_in(proba, calls), active=True, rounds=3
    )
    assert run.reviewed.sum() == 600
    # Round 1 (200 items) is random; rounds 2 and 3 take only unsure items.
    first = set(calls[0][0])
    later = np.array(sorted(set(np.flatnonzero(run.reviewed)) - first))
    assert len(first) == 200 and len(later) == 400
    assert not sure[later].any()
    assert len(calls) == 2 + 2  # two uncertainty fits, two pseudo-label fits


def test_pseudo_labelling_never_reads_unreviewed_human_labels() -> None:
    human, _, proba = _world(1000, seed=3)
    first = pseudo_labels(human, 150, seed=4, fit_proba=_stand_in(proba, []), active=True)
    scrambled = human.copy()
    scrambled[~first.reviewed] = (scrambled[~first.reviewed] + 1) % K
    again = pseudo_labels(scrambled, 150, seed=4, fit_proba=_stand_in(proba, []), active=True)
    assert np.array_equal(first.reviewed, again.reviewed)
    assert np.array_equal(first.labels, again.labels)


def test_bad_input() -> None:
    fit = _stand_in(np.full((5, K), 0.25), [])
    with pytest.raises(ValueError, match="budget"):
        pseudo_labels(np.zeros(5, int), 6, seed=0, fit_proba=fit)
    with pytest.raises(ValueError, match="iterations"):
        pseudo_labels(np.zeros(5, int), 2, seed=0, fit_proba=fit, iterations=0)
