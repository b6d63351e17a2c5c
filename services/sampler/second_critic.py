"""The trainer's latest model as a second critic of streamed items (the feedback loop).

The trainer publishes every finished fit's model on ``act.models``
(:mod:`services.trainer.publish`) with a map that fuses the critic's eps with
the model's probability that the machine label is wrong, and says whether the
fusion beat the critic alone on its validation reviews (``use_as_critic``).
In streaming mode the sampler scores each new item with the task's latest
such model and samples by the fused eps; the decision records the model's fit
id, its error probability and the fused eps beside pi, so the ACT loss stays
unbiased: pi is what was known when the item was decided.

When the model is not worth using but the critic's own recalibration on the
same reviews beat its raw eps (``calibrate_critic``), the sampler samples by
the recalibrated eps instead: the exponential and normalization rules use the
size of eps. A model that cannot be loaded (a hash mismatch, weights of
another network) and an item the model cannot read leave the critic's eps in
charge (recalibrated where that helps); both are
counted (``act_sampler_second_critic_total``) and logged without content.
torch is imported only when a model is first loaded, so a sampler without
published models never loads it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import structlog
from act.v1 import critique_pb2, training_pb2
from prometheus_client import Counter

from services.core.fusion import EpsFusion
from services.runtime.config import KafkaSettings
from services.runtime.table import CompactedTable

log = structlog.get_logger(__name__)

SecondCriticMode = Literal["auto", "off"]

SCORED = Counter(
    "act_sampler_second_critic_total",
    "Streamed items by what the second critic did: used (fused eps), calibrated (the "
    "critic's eps recalibrated, no model), unreadable (the model could not read the item), "
    "unusable (the model or calibration could not be loaded).",
    ["outcome"],
)


class ModelSource(Protocol):
    """Where the sampler finds each task's latest published model."""

    def current(self, key: str) -> training_pb2.PublishedModel | None:
        """The task's latest published model, or None."""
        ...


class StaticModelSource:
    """A fixed set of published models (tests, tools)."""

    def __init__(self, *models: training_pb2.PublishedModel) -> None:
        self.models = {m.task_id: m for m in models}

    def current(self, key: str) -> training_pb2.PublishedModel | None:
        """The task's model, or None."""
        return self.models.get(key)


def model_book(kafka: KafkaSettings) -> CompactedTable[training_pb2.PublishedModel]:
    """A follower of ``act.models``: the latest published model of every task."""
    return CompactedTable(
        kafka, "models", training_pb2.PublishedModel.FromString, lambda m: m.task_id
    )


class ModelLoadError(ValueError):
    """A published model that cannot be used (named by its fit id, never its content)."""


@dataclass(frozen=True)
class Opinion:
    """The second critic's view of one item."""

    eps: float  # the eps the rule uses: fused, or the critic's recalibrated
    model_eps: float | None  # 1 - p_model(machine label); None: recalibrated only
    fit_id: str


@dataclass
class LoadedModel:
    """A published model ready to score items."""

    fit_id: str
    kind: Any  # services.trainer.networks.InputKind
    network: Any  # torch.nn.Module in eval mode
    fusion: EpsFusion

    def model_eps(self, critique: critique_pb2.Critique) -> float:
        """1 - p_model(machine label) of the critiqued item; FeatureError when unreadable."""
        import torch

        from services.trainer.features import prepare_inputs
        from services.trainer.items import raw_input

        annotation = critique.annotation
        raw = raw_input(self.kind, annotation.item)
        stacked = np.stack([raw]) if isinstance(raw, np.ndarray) else [raw]
        inputs = prepare_inputs(self.kind, stacked)
        with torch.inference_mode():
            probs = self.network(inputs).softmax(dim=-1)[0]
        label = annotation.label_index
        if not 0 <= label < probs.numel():
            raise ModelLoadError(f"label {label} outside the model's {probs.numel()} classes")
        return float(1.0 - probs[label].item())


def fusion_of(message: training_pb2.EpsFusionMap, sources: int, fit_id: str) -> EpsFusion:
    """A published fusion map of ``sources`` inputs (ModelLoadError when it is not one)."""
    try:
        fusion = EpsFusion.from_dict(
            {
                "method": message.method,
                "coef": list(message.coef),
                "intercept": message.intercept,
                "n_reviews": message.n_reviews,
            }
        )
    except ValueError as exc:  # unknown method, no coefficients
        raise ModelLoadError(f"fit {fit_id}: {exc}") from exc
    if len(fusion.coef) != sources:
        raise ModelLoadError(f"fit {fit_id}: the map has {len(fusion.coef)} sources, not {sources}")
    return fusion


def load_model(published: training_pb2.PublishedModel) -> LoadedModel:
    """Verify and load a published model (weights only: no code is unpickled)."""
    fit_id = published.fit_id
    try:
        import torch

        from services.trainer.networks import build_network, network_spec
    except ImportError as exc:  # an image without torch: the critic alone decides
        raise ModelLoadError(f"fit {fit_id}: cannot load models here ({exc.name})") from exc
    if not published.weights:
        raise ModelLoadError(f"fit {fit_id}: no weights published")
    if hashlib.sha256(published.weights).hexdigest() != published.weights_sha256:
        raise ModelLoadError(f"fit {fit_id}: weights do not match their SHA-256")
    fusion = fusion_of(published.fusion, 2, fit_id)
    try:
        spec = network_spec(published.model)
        network = build_network(spec.name, published.num_classes, dict(published.params))
        state = torch.load(io.BytesIO(published.weights), map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
    except Exception as exc:  # unknown network, wrong shapes, unreadable bytes
        raise ModelLoadError(f"fit {fit_id}: {type(exc).__name__}: {exc}") from exc
    network.eval()
    return LoadedModel(fit_id=fit_id, kind=spec.input_kind, network=network, fusion=fusion)


class SecondCritic:
    """Fuses each streamed critique's eps with the task's latest usable model, or
    recalibrates it alone when the model is not used but the recalibration helps."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        #: Per task: the fit id last seen and its loaded model (None: unusable).
        self._loaded: dict[str, tuple[str, LoadedModel | None]] = {}
        #: Per task: the fit id last seen and its critic calibration map.
        self._calibrations: dict[str, tuple[str, EpsFusion | None]] = {}

    def _model(self, task_id: str, published: training_pb2.PublishedModel) -> LoadedModel | None:
        cached = self._loaded.get(task_id)
        if cached is not None and cached[0] == published.fit_id:
            return cached[1]
        loaded: LoadedModel | None = None
        try:
            loaded = load_model(published)
            log.info("second_critic_loaded", task_id=task_id, fit_id=published.fit_id)
        except ModelLoadError as exc:
            SCORED.labels(outcome="unusable").inc()
            log.warning("second_critic_unusable", task_id=task_id, error=str(exc))
        self._loaded[task_id] = (published.fit_id, loaded)
        return loaded

    def _calibration(
        self, task_id: str, published: training_pb2.PublishedModel
    ) -> EpsFusion | None:
        cached = self._calibrations.get(task_id)
        if cached is not None and cached[0] == published.fit_id:
            return cached[1]
        calibration: EpsFusion | None = None
        try:
            calibration = fusion_of(published.critic_calibration, 1, published.fit_id)
        except ModelLoadError as exc:
            SCORED.labels(outcome="unusable").inc()
            log.warning("critic_calibration_unusable", task_id=task_id, error=str(exc))
        self._calibrations[task_id] = (published.fit_id, calibration)
        return calibration

    def opinion(self, task_id: str, critique: critique_pb2.Critique, eps: float) -> Opinion | None:
        """The eps to sample by (fused, or recalibrated), or None: the critic's own."""
        published = self.source.current(task_id)
        if published is None:
            return None
        if published.use_as_critic:
            model = self._model(task_id, published)
            if model is not None:
                try:
                    model_eps = model.model_eps(critique)
                except Exception as exc:  # unreadable item, odd input: never fail the record
                    SCORED.labels(outcome="unreadable").inc()
                    log.warning(
                        "second_critic_skipped", task_id=task_id, fit_id=model.fit_id,
                        item_id=critique.annotation.item.item_id, error=type(exc).__name__,
                    )  # fmt: skip
                else:
                    fused = float(model.fusion(np.array([[eps, model_eps]]))[0])
                    SCORED.labels(outcome="used").inc()
                    return Opinion(eps=fused, model_eps=model_eps, fit_id=model.fit_id)
        if published.calibrate_critic:
            calibration = self._calibration(task_id, published)
            if calibration is not None:
                SCORED.labels(outcome="calibrated").inc()
                value = float(calibration(np.array([[eps]]))[0])
                return Opinion(eps=value, model_eps=None, fit_id=published.fit_id)
        return None
