"""The streaming feedback loop in the sampler: the trainer's model as a second critic."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from act.v1 import critique_pb2, review_pb2, training_pb2

from services.core.recalibration import logit, sigmoid
from services.datasets.png import encode_gray_png
from services.sampler.second_critic import (
    SCORED,
    ModelLoadError,
    SecondCritic,
    StaticModelSource,
    load_model,
)
from services.sampler.service import SamplerSettings, SamplerStage
from services.trainer.networks import build_network
from tests.support.harness import StageHarness

from .support import critique
from .test_service import decision_of

TASK = "task"
CONFIDENT = 5.0  # the model's logit for class 0; every other class 0


def _weights(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def _published(*, use: bool = True, tamper: bool = False) -> training_pb2.PublishedModel:
    """A CNN that says "class 0" for every image, fused with coefficients (1, 1)."""
    torch.manual_seed(0)
    model = build_network("cnn-28x28", 10)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = CONFIDENT
    weights = _weights(model)
    return training_pb2.PublishedModel(
        task_id=TASK,
        fit_id="fit-7",
        model="cnn-28x28",
        num_classes=10,
        weights=weights,
        weights_sha256=hashlib.sha256(weights + (b"x" if tamper else b"")).hexdigest(),
        fusion=training_pb2.EpsFusionMap(method="stacking", coef=[1.0, 1.0], n_reviews=100),
        use_as_critic=use,
    )


def _image_critique(item_id: str, eps: float, label: int) -> critique_pb2.Critique:
    c = critique(TASK, item_id, eps, label=label)
    c.annotation.item.ClearField("text")
    c.annotation.item.image_bytes = encode_gray_png(np.full((28, 28), 80, dtype=np.uint8))
    return c


def _stage(second: SecondCritic | None) -> SamplerStage:
    settings = SamplerSettings(
        metrics_port=0, budget_fraction=0.1, window_items=100, rule="threshold", seed=1
    )  # type: ignore[call-arg]
    return SamplerStage(settings, second_critic=second)


def _p_other() -> float:
    """The model's probability of any class but 0."""
    return float(1.0 / (np.exp(CONFIDENT) + 9.0))


async def test_streamed_items_are_sampled_by_the_fused_eps() -> None:
    stage = _stage(SecondCritic(StaticModelSource(_published())))
    harness = StageHarness(stage)
    # The critic gives every item eps 0.3; the model agrees with label 0 only.
    for i in range(60):
        await harness.process(_image_critique(f"a{i}", 0.3, label=0))
    outputs = await harness.process(_image_critique("z", 0.3, label=3))
    request = outputs[0].value
    assert outputs[0].topic == "review_requests" and isinstance(request, review_pb2.ReviewRequest)
    d = request.decision
    assert d.second_critic_fit_id == "fit-7"
    assert d.second_critic_eps == pytest.approx(1.0 - _p_other(), rel=1e-5)
    fused = float(sigmoid(logit(0.3) + logit(1.0 - _p_other())))
    assert d.eps == pytest.approx(fused, rel=1e-5) and d.critique.eps == pytest.approx(0.3)
    assert d.pi == 1.0  # far above the agreeing items' fused eps
    labels = [o.value for o in harness.outputs[:60] if isinstance(o.value, review_pb2.FinalLabel)]
    assert labels
    label = labels[-1]
    p0 = np.exp(CONFIDENT) / (np.exp(CONFIDENT) + 9.0)
    assert label.decision.eps == pytest.approx(float(sigmoid(logit(0.3) + logit(1 - p0))), 1e-5)
    assert label.eps == pytest.approx(0.3)  # the label keeps the critic's own eps


async def test_without_a_usable_model_the_critic_alone_decides() -> None:
    unusable = SCORED.labels(outcome="unusable")
    unreadable = SCORED.labels(outcome="unreadable")
    before = (unusable._value.get(), unreadable._value.get())
    for second in (
        None,
        SecondCritic(StaticModelSource()),
        SecondCritic(StaticModelSource(_published(use=False))),
        SecondCritic(StaticModelSource(_published(tamper=True))),
    ):
        out = await StageHarness(_stage(second)).process(_image_critique("z", 0.3, label=3))
        d = decision_of(out)
        assert d.eps == pytest.approx(0.3) and d.second_critic_fit_id == ""
        assert not d.HasField("second_critic_eps")
    # A text item for an image model: the critic decides, the skip is counted.
    text_item = critique(TASK, "t", 0.3, label=3)
    out = await StageHarness(_stage(SecondCritic(StaticModelSource(_published())))).process(
        text_item
    )
    assert decision_of(out).eps == pytest.approx(0.3)
    assert unusable._value.get() == before[0] + 1  # loaded once, then cached as unusable
    assert unreadable._value.get() == before[1] + 1


async def test_a_model_not_used_can_still_recalibrate_the_critic() -> None:
    published = _published(use=False)
    published.calibrate_critic = True
    published.critic_calibration.CopyFrom(
        training_pb2.EpsFusionMap(method="stacking", coef=[2.0], intercept=-1.0, n_reviews=80)
    )
    calibrated = SCORED.labels(outcome="calibrated")
    before = calibrated._value.get()
    stage = _stage(SecondCritic(StaticModelSource(published)))
    out = await StageHarness(stage).process(_image_critique("z", 0.3, label=3))
    d = decision_of(out)
    assert d.eps == pytest.approx(float(sigmoid(2.0 * logit(0.3) - 1.0)), rel=1e-6)
    assert d.calibration_fit_id == "fit-7" and d.second_critic_fit_id == ""
    assert not d.HasField("second_critic_eps") and d.critique.eps == pytest.approx(0.3)
    assert calibrated._value.get() == before + 1
    # A model in use takes precedence: the fusion already calibrates.
    published.use_as_critic = True
    out = await StageHarness(_stage(SecondCritic(StaticModelSource(published)))).process(
        _image_critique("y", 0.3, label=3)
    )
    assert decision_of(out).second_critic_fit_id == "fit-7"
    assert decision_of(out).calibration_fit_id == ""


def test_published_weights_must_match_their_network() -> None:
    published = _published()
    load_model(published)  # loads
    wrong = training_pb2.PublishedModel()
    wrong.CopyFrom(published)
    wrong.num_classes = 4  # the weights have 10 outputs
    with pytest.raises(ModelLoadError, match="fit-7"):
        load_model(wrong)
    code = training_pb2.PublishedModel()
    code.CopyFrom(published)
    buffer = io.BytesIO()
    torch.save({"anything": object()}, buffer)  # not tensors: refused unpickling
    code.weights = buffer.getvalue()
    code.weights_sha256 = hashlib.sha256(code.weights).hexdigest()
    with pytest.raises(ModelLoadError, match="fit-7"):
        load_model(code)
