"""A finished fit's model as the sampler's second critic (the streaming feedback loop).

After a fit succeeds the trainer publishes its model on ``act.models``
(compacted, keyed by task), with a map that fuses the critic's eps with the
model's probability that the machine label is wrong, ``1 - p_model(machine
label)`` (:mod:`services.core.fusion`; the idea of active label cleaning,
Bernhardt et al., Nature Communications 13, 1161, 2022). The sampler then
scores every new item with the latest model and samples by the fused eps,
recording it and pi on the decision, so the ACT loss stays unbiased.

The map is fitted on the fit's held-out validation items that humans
reviewed: the model never trained on them, so its probabilities there are
out of sample, as stacking needs. Each review weighs 1/pi. Whether the model
is worth using is decided on the same items, out of fold
(:func:`~services.core.fusion.fusion_gain`): ``use_as_critic`` only when the
fused eps has a lower cross-validated log loss than the critic's eps
recalibrated alone, and the model's error probability raises the fused eps.
The critic's own recalibration (Platt scaling on the same reviews) goes with
it, marked ``calibrate_critic`` when it beat the raw eps out of fold: the
sampler uses it when the model is not used.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import torch
from act.v1 import training_pb2

from services.core.fusion import EpsFusion, fit_eps_fusion, fusion_gain, mean_fusion
from services.trainer.events import now_timestamp
from services.trainer.fit import predict_proba
from services.trainer.fitting import PreparedData

#: Largest weights published inline (the topic allows 4 MiB per record).
MAX_WEIGHTS_BYTES = 3 * 1024 * 1024
#: Prefix of the publication's metrics on the fit's status.
METRIC_PREFIX = "second_critic_"


def weights_bytes(model: torch.nn.Module) -> bytes:
    """The model's state_dict, on the CPU, as ``torch.save`` bytes (tensors only)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def fusion_map(fusion: EpsFusion) -> training_pb2.EpsFusionMap:
    """An :class:`EpsFusion` as its protobuf message."""
    return training_pb2.EpsFusionMap(**fusion.to_dict())


def validation_scores(
    model: torch.nn.Module, data: PreparedData, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(critic eps, 1 - p_model(machine label)) of the validation items, their
    review outcomes (human != machine) and their pi."""
    val = data.validation
    probs = predict_proba(model, val.inputs, device=device).double().numpy()
    rows = np.arange(len(data.validation_machine))
    model_eps = 1.0 - probs[rows, data.validation_machine] if rows.size else np.zeros(0)
    scores = np.column_stack([data.validation_eps, model_eps])
    error = val.labels.numpy() != data.validation_machine
    return scores, error, data.validation_pi


def build_published_model(
    status: training_pb2.FitStatus,
    model: torch.nn.Module,
    data: PreparedData,
    *,
    device: str = "cpu",
) -> training_pb2.PublishedModel:
    """The fit's model, its fusion map and whether the sampler should use it."""
    weights = weights_bytes(model)
    published = training_pb2.PublishedModel(
        task_id=status.task_id,
        fit_id=status.fit_id,
        model=status.config.model,
        params={k: v for k, v in status.config.params.items() if k != "num_classes"},
        num_classes=data.num_classes,
        weights=weights,
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        published_at=now_timestamp(),
    )
    metrics: dict[str, float] = {"weights_bytes": float(len(weights))}
    reason = ""
    fusion = mean_fusion(2)
    if len(data.validation) == 0:
        reason = "no reviewed validation items"
    else:
        scores, error, pi = validation_scores(model, data, device)
        metrics["fusion_reviews"] = float(error.size)
        metrics["fusion_errors"] = float(error.sum())
        fusion = fit_eps_fusion(scores, error, pi)
        gain = fusion_gain(scores, error, pi, seed=int(status.config.seed))
        if gain is None:
            reason = "too few reviewed validation items of either outcome for 5 folds"
        else:
            metrics["fusion_cv_log_loss"] = gain.fused_loss
            metrics["critic_cv_log_loss"] = gain.first_loss
            metrics["raw_critic_log_loss"] = gain.raw_loss
            calibration = fit_eps_fusion(scores[:, :1], error, pi)
            if gain.recalibrating_helps and calibration.method == "stacking":
                published.critic_calibration.CopyFrom(fusion_map(calibration))
                published.calibrate_critic = True
            if not gain.helps:
                reason = "the fusion did not beat the critic alone on validation"
            elif fusion.method != "stacking" or fusion.coef[1] <= 0:
                reason = "the model's error probability does not raise the fused eps"
    if len(weights) > MAX_WEIGHTS_BYTES:
        reason = f"weights of {len(weights)} bytes exceed {MAX_WEIGHTS_BYTES}"
        published.weights = b""
    published.fusion.CopyFrom(fusion_map(fusion))
    published.use_as_critic = not reason
    published.reason = reason
    metrics["used"] = float(published.use_as_critic)
    metrics["calibrates_critic"] = float(published.calibrate_critic)
    published.metrics.update(metrics)
    return published


def status_metrics(published: training_pb2.PublishedModel) -> dict[str, float]:
    """The publication's metrics as the fit's status shows them (prefixed)."""
    return {METRIC_PREFIX + k: v for k, v in published.metrics.items()}
