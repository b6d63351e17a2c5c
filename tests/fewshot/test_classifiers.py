"""The numpy classifiers and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from services.fewshot.classifiers import (
    KNearest,
    NearestCentroid,
    SoftmaxRegression,
    cross_fitted_logits,
    fit_temperature,
    softmax,
)


def _blobs(n_per: int = 30, classes: int = 3, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    x = np.concatenate([c + rng.normal(0, 1, (n_per, dim)) for c in centres])
    y = np.repeat(np.arange(classes), n_per)
    return x, y


@pytest.mark.parametrize("make", [SoftmaxRegression, KNearest, NearestCentroid])
def test_classifiers_learn_separable_blobs(make):
    x_all, y_all = _blobs(n_per=60)
    train = np.arange(len(y_all)) % 2 == 0
    x, y, xt, yt = x_all[train], y_all[train], x_all[~train], y_all[~train]
    model = make()
    model.fit(x, y, 3)
    proba = softmax(model.logits(xt))
    assert proba.shape == (len(yt), 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == yt).mean() > 0.9


def test_softmax_regression_is_deterministic():
    x, y = _blobs()
    a, b = SoftmaxRegression(), SoftmaxRegression()
    a.fit(x, y, 3)
    b.fit(x, y, 3)
    assert np.array_equal(a.logits(x), b.logits(x))


def test_fit_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 4))
    true_t = 2.5
    proba = softmax(logits / true_t)
    y = np.array([rng.choice(4, p=p) for p in proba])
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)


def test_leave_one_out_logits_match_refits():
    x, y = _blobs(n_per=6)
    for make in (lambda: KNearest(k=3), NearestCentroid):
        model = make()
        model.fit(x, y, 3)
        loo = model.loo_logits()
        assert loo is not None
        for i in (0, 7, 17):
            keep = np.arange(len(y)) != i
            refit = make()
            refit.fit(x[keep], y[keep], 3)
            assert np.allclose(loo[i], refit.logits(x[i : i + 1])[0])


def test_cross_fitted_logits_never_use_the_row_itself():
    x, y = _blobs(n_per=10)
    out = cross_fitted_logits(SoftmaxRegression, x, y, 3, folds=5)
    assert out.shape == (30, 3)
    assert (out.argmax(axis=1) == y).mean() > 0.8


def test_fit_validation():
    with pytest.raises(ValueError):
        SoftmaxRegression().fit(np.zeros((2, 2)), np.array([0, 5]), 2)
    with pytest.raises(RuntimeError):
        KNearest().logits(np.zeros((1, 2)))
