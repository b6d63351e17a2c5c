"""A finished fit's model as the sampler's second critic: what is published and when it is used."""

from __future__ import annotations

import numpy as np
import torch
from act.v1 import training_pb2

from services.core.recalibration import sigmoid
from services.trainer.data import ActDataset, LabelledSet
from services.trainer.fitting import PreparedData
from services.trainer.networks import build_network
from services.trainer.publish import build_published_model, status_metrics

PARAMS = {"input_dim": "2"}


def _points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _model(x: np.ndarray, y: np.ndarray, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_network("mlp", 2, PARAMS)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xs), ys).backward()
        opt.step()
    return model.eval()


def _data(rng: np.random.Generator, n_val: int = 800) -> PreparedData:
    """Validation reviews whose machine label is wrong on 25% of items, independently of
    x; the critic's eps sees the error through noise; review chance follows the critic."""
    x, y = _points(rng, n_val)
    error = rng.random(n_val) < 0.25
    machine = np.where(error, 1 - y, y)
    eps = sigmoid(1.5 * error - 1.5 + rng.normal(0.0, 1.0, n_val))
    pi = np.clip(eps, 0.1, 1.0)
    xt, yt = _points(rng, 10)
    train = ActDataset.from_arrays(torch.from_numpy(xt), yt, yt, np.ones(10, bool), np.ones(10), 2)
    return PreparedData(
        train=train,
        validation=LabelledSet.from_arrays(torch.from_numpy(x), y, 1.0 / pi),
        skipped=0,
        num_classes=2,
        validation_machine=machine,
        validation_eps=eps,
        validation_pi=pi,
    )


def _status() -> training_pb2.FitStatus:
    config = training_pb2.FitConfig(model="mlp", seed=3, params={**PARAMS, "num_classes": "2"})
    return training_pb2.FitStatus(fit_id="fit-1", task_id="task", config=config)


def test_a_model_that_sees_the_errors_is_published_as_a_critic() -> None:
    rng = np.random.default_rng(5)
    data = _data(rng)
    model = _model(*_points(rng, 2_000), seed=0)  # trained on other, human-labelled items
    published = build_published_model(_status(), model, data)
    assert published.use_as_critic, published.reason
    assert published.reason == ""
    assert (published.task_id, published.fit_id, published.model) == ("task", "fit-1", "mlp")
    assert dict(published.params) == PARAMS and published.num_classes == 2
    m = published.metrics
    assert m["fusion_cv_log_loss"] < m["critic_cv_log_loss"]
    assert m["fusion_reviews"] == 800 and m["used"] == 1.0
    assert published.fusion.method == "stacking" and published.fusion.coef[1] > 0.5
    assert status_metrics(published)["second_critic_used"] == 1.0
    # The critic's eps (logit 1.5 error - 1.5 plus noise) is not calibrated: its
    # own Platt map beats it out of fold and goes with the model.
    assert m["critic_cv_log_loss"] < m["raw_critic_log_loss"]
    assert published.calibrate_critic and len(published.critic_calibration.coef) == 1
    assert m["calibrates_critic"] == 1.0


def test_a_model_that_learnt_nothing_is_published_but_not_used() -> None:
    rng = np.random.default_rng(6)
    data = _data(rng)
    x, _ = _points(rng, 2_000)
    noise = rng.integers(0, 2, size=2_000)
    published = build_published_model(_status(), _model(x, noise, seed=1), data)
    assert not published.use_as_critic
    assert published.reason == "the fusion did not beat the critic alone on validation"
    assert published.metrics["fusion_cv_log_loss"] >= published.metrics["critic_cv_log_loss"]
    assert published.weights  # still published: the next fit may be better


def test_without_reviewed_validation_items_the_model_is_not_used() -> None:
    rng = np.random.default_rng(7)
    data = _data(rng, n_val=0)
    published = build_published_model(_status(), _model(*_points(rng, 200), seed=2), data)
    assert not published.use_as_critic and published.reason == "no reviewed validation items"
    assert published.fusion.method == "mean" and list(published.fusion.coef) == [0.5, 0.5]
