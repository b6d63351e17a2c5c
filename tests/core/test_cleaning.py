"""Confident-learning filtering finds flipped labels and never drops a trusted (reviewed) row."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.cleaning import (
    PLC_THRESHOLDS,
    agreement_keep,
    confident_keep,
    progressive_correction,
)


def _noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True classes, labels with 20% flips to the next class, and out-of-sample
    probabilities of a decent model (right class ~0.7 on average, noisy)."""
    rng = np.random.default_rng(seed)
    k = 5
    truth = rng.integers(0, k, n)
    flipped = rng.random(n) < 0.2
    labels = np.where(flipped, (truth + 1) % k, truth)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 2.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, proba, flipped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flags_mostly_flipped_labels(seed: int) -> None:
    labels, proba, flipped = _noisy(5000, seed)
    keep = confident_keep(labels, proba)
    dropped = ~keep
    precision = flipped[dropped].mean()
    recall = dropped[flipped].mean()
    assert precision > 0.8  # what it drops is mostly wrong
    assert recall > 0.6  # and it finds most of what is wrong
    # The kept set is cleaner than the input.
    assert flipped[keep].mean() < 0.5 * flipped.mean()


def test_trusted_rows_are_never_dropped() -> None:
    labels, proba, flipped = _noisy(3000, 3)
    trusted = np.zeros(labels.size, bool)
    trusted[flipped.nonzero()[0][:100]] = True  # reviewed rows, even with a "wrong" label
    keep = confident_keep(labels, proba, trusted)
    assert keep[trusted].all()
    assert (~keep).sum() > 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="one row per label"):
        confident_keep(np.zeros(3, int), np.ones((4, 2)) / 2)
    with pytest.raises(ValueError, match="class indices"):
        confident_keep(np.array([0, 2]), np.ones((2, 2)) / 2)


def test_agreement_keeps_trusted_rows_and_agreeing_machine_labels() -> None:
    """With a model of the human labels whose mistakes are independent of the
    annotator's, the kept unreviewed rows are much cleaner than all of them."""
    labels, proba, flipped = _noisy(6000, 4)
    trusted = np.zeros(labels.size, bool)
    trusted[:500] = True
    keep = agreement_keep(labels, proba, trusted)
    assert keep[trusted].all()
    agree = proba.argmax(axis=1) == labels
    assert np.array_equal(keep[~trusted], agree[~trusted])
    unreviewed = ~trusted
    assert flipped[keep & unreviewed].mean() < 0.25 * flipped[unreviewed].mean()
    with pytest.raises(ValueError, match="same rows"):
        agreement_keep(labels[:3], proba, trusted)


def test_progressive_correction_flips_only_confident_untrusted_contradictions() -> None:
    labels = np.array([0, 0, 1, 2, 0])
    proba = np.array(
        [
            [0.1, 0.8, 0.1],  # 0.8 - 0.1 > 0.5: becomes 1
            [0.4, 0.5, 0.1],  # 0.5 - 0.4: too close, kept
            [0.9, 0.05, 0.05],  # trusted (a human label): never changed
            [0.2, 0.2, 0.6],  # already the top class
            [0.05, 0.05, 0.9],  # becomes 2
        ]
    )
    trusted = np.array([False, False, True, False, False])
    out = progressive_correction(labels, proba, trusted, 0.5)
    assert out.tolist() == [1, 0, 1, 2, 2]
    assert progressive_correction(labels, proba, trusted, 0.05).tolist() == [1, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        progressive_correction(labels, proba, trusted, 1.0)
    with pytest.raises(ValueError):
        progressive_correction(labels[:3], proba, trusted, 0.5)


def test_progressive_correction_repairs_input_dependent_noise() -> None:
    # Two look-alike classes: the annotator calls 40% of class 1 "0" (noise that
    # depends on the class, as PLC assumes); a model that is right 95% of the time
    # with its confidence on the top class corrects most of it, breaking little.
    rng = np.random.default_rng(4)
    n = 20_000
    truth = rng.integers(0, 2, n)
    labels = np.where((truth == 1) & (rng.random(n) < 0.4), 0, truth)
    right = rng.random(n) < 0.95
    top = np.where(right, truth, 1 - truth)
    confidence = rng.uniform(0.6, 1.0, n)
    proba = np.zeros((n, 2))
    proba[np.arange(n), top] = confidence
    proba[np.arange(n), 1 - top] = 1 - confidence
    trusted = rng.random(n) < 0.1
    out = labels
    for threshold in PLC_THRESHOLDS:
        out = progressive_correction(out, proba, trusted, threshold)
    before, after = (labels != truth).mean(), (out != truth).mean()
    assert after < 0.5 * before
    assert (out[trusted] == labels[trusted]).all()
