"""What a fit trains on and with: config defaults, data preparation, the network.

No storage, files or events here: the caller (:mod:`services.trainer.fitrun`)
reads the label snapshot, records progress and writes checkpoints. What a fit
chooses on validation before its final training (label cleaning, lambda) is
:mod:`services.trainer.choices`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch
from act.v1 import common_pb2, training_pb2

from services.core.calibration import review_calibration
from services.core.recalibration import EpsCalibration
from services.trainer.data import ActDataset, LabelledSet
from services.trainer.features import FeatureError, prepare_inputs
from services.trainer.fit import TrainConfig
from services.trainer.loss import LossKind, trust_from_eps
from services.trainer.networks import InputKind, build_network, network_spec
from services.trainer.settings import TrainerSettings
from services.trainer.store import LabelRow

log = structlog.get_logger(__name__)

#: The loss of each ``LossKind`` of the API (unspecified = the ACT loss).
LOSS_KINDS = {
    training_pb2.LOSS_KIND_UNSPECIFIED: LossKind.ACT,
    training_pb2.LOSS_KIND_ACT: LossKind.ACT,
    training_pb2.LOSS_KIND_HUMAN_ONLY: LossKind.HUMAN_ONLY,
    training_pb2.LOSS_KIND_MACHINE_ONLY: LossKind.MACHINE_ONLY,
    training_pb2.LOSS_KIND_ACT_DATA_CE: LossKind.ACT_DATA_CE,
    training_pb2.LOSS_KIND_ACT_NONNEG: LossKind.ACT_NONNEG,
}
#: Default downstream model by task modality.
DEFAULT_MODEL_BY_MODALITY = {
    common_pb2.MODALITY_IMAGE: "cnn-28x28",
    common_pb2.MODALITY_TEXT: "minilm-head",
}

#: Decodes a stored item (serialised ``act.v1.Item``) into a raw model input;
#: raises FeatureError for an item the model cannot read.
ItemDecoder = Callable[[InputKind, bytes], Any]


def resolve_config(
    config: training_pb2.FitConfig,
    settings: TrainerSettings,
    *,
    num_classes: int | None = None,
    modality: int | None = None,
) -> training_pb2.FitConfig:
    """Fill defaults (settings, then the model's); raise ValueError for an invalid config.

    KeyError for an unknown model.
    """
    c = training_pb2.FitConfig()
    c.CopyFrom(config)
    if not c.model:
        c.model = settings.model or DEFAULT_MODEL_BY_MODALITY.get(
            modality or common_pb2.MODALITY_UNSPECIFIED, "cnn-28x28"
        )
    spec = network_spec(c.model)
    if c.epochs <= 0:
        c.epochs = settings.epochs or spec.epochs
    if c.batch_size <= 0:
        c.batch_size = settings.batch_size or spec.batch_size
    if c.learning_rate <= 0:
        c.learning_rate = settings.learning_rate or spec.learning_rate
    if c.HasField("power_lambda") and not 0.0 <= c.power_lambda <= 1.0:
        raise ValueError("power_lambda must be in [0, 1]")
    if any(not 0.0 <= v <= 1.0 for v in c.power_lambda_grid):
        raise ValueError("power_lambda_grid values must be in [0, 1]")
    if not 0.0 <= c.validation_fraction < 1.0:
        raise ValueError("validation_fraction must be in [0, 1)")
    if c.validation_fraction == 0.0:
        c.validation_fraction = settings.validation_fraction
    weighting = c.machine_label_weighting
    if weighting not in training_pb2.MachineLabelWeighting.values():
        raise ValueError(f"unknown machine label weighting {weighting}")
    if weighting and c.loss != training_pb2.LOSS_KIND_ACT:
        raise ValueError("machine label weighting applies to the ACT loss only")
    if num_classes is not None and "num_classes" not in c.params:
        c.params["num_classes"] = str(num_classes)
    return c


def validation_member(item_id: str, fraction: float) -> bool:
    """Whether an item belongs to the held-out validation slice (stable hash of its id)."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(item_id.encode(), digest_size=8, person=b"act-trainer-val").digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


@dataclass
class PreparedData:
    """A fit's training and validation data, built from a label snapshot."""

    train: ActDataset
    validation: LabelledSet
    skipped: int
    num_classes: int
    #: The critic's eps recalibrated on the snapshot's reviewed items (1/pi-weighted).
    calibration: EpsCalibration | None = None
    #: The critic's mean eps and the 1/pi-weighted (Hajek) machine error rate of
    #: the reviewed items, which estimates the error rate of all items.
    eps_mean: float = float("nan")
    error_rate: float = float("nan")
    #: The validation items' machine labels, critic's eps and pi (aligned with
    #: ``validation``): what the published model's fusion is fitted on.
    validation_machine: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    validation_eps: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    validation_pi: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def calibration_metrics(self) -> dict[str, float]:
        """The calibration as FitStatus metrics (empty without reviews)."""
        if self.calibration is None:
            return {}
        cal = self.calibration
        out = {
            "eps_calibration_reviews": float(cal.n_reviews),
            "eps_calibration_identity": float(cal.method == "identity"),
            "eps_mean": self.eps_mean,
            "machine_error_rate_estimate": self.error_rate,
        }
        for e in (0.1, 0.3, 0.5, 0.7, 0.9):
            out[f"eps_calibrated_at_{e:.1f}"] = float(cal([e])[0])
        trust = self.train.trust
        if trust is not None:
            unreviewed = ~self.train.delta
            if bool(unreviewed.any()):
                out["machine_label_trust_mean"] = float(trust[unreviewed].mean())
        return out


def prepare_data(
    rows: Iterable[LabelRow], config: training_pb2.FitConfig, decode: ItemDecoder
) -> PreparedData:
    """A label snapshot as tensors, split into training and the human-labelled validation set.

    Items ``decode`` rejects are skipped (and counted); ValueError when no
    item is left to train on.
    """
    spec = network_spec(config.model)
    raws: list[Any] = []
    kept = []
    skipped = 0
    for row in rows:
        try:
            raws.append(decode(spec.input_kind, row.item))
            kept.append(row)
        except FeatureError as exc:
            skipped += 1
            log.warning("item_skipped", item_id=row.item_id, error=str(exc))
    if not kept:
        raise ValueError("no item could be turned into model input")
    labels_seen = [r.machine_label for r in kept] + [
        r.human_label for r in kept if r.human_label is not None
    ]
    num_classes = int(config.params.get("num_classes", "0")) or max(2, max(labels_seen) + 1)
    val_mask = np.array(
        [validation_member(r.item_id, config.validation_fraction) for r in kept], dtype=bool
    )
    if val_mask.all():
        val_mask[:] = False  # never hold out everything
    inputs = prepare_inputs(spec.input_kind, _stack(spec.input_kind, raws))
    machine = np.array([r.machine_label for r in kept], dtype=np.int64)
    human = np.array([-1 if r.human_label is None else r.human_label for r in kept])
    delta = np.array([r.delta for r in kept], dtype=bool)
    pi = np.array([r.pi for r in kept], dtype=np.float64)
    train_idx = torch.from_numpy(np.flatnonzero(~val_mask))
    eps = np.array([r.eps for r in kept], dtype=np.float64)
    reviewed = delta & (human >= 0) & (pi > 0)
    # What the reviews say about the critic: the gateway's statistics compute the same.
    summary = review_calibration(
        eps[reviewed].tolist(), (human != machine)[reviewed].tolist(), pi[reviewed].tolist()
    )
    calibration = None if summary is None else summary.recalibration
    error_rate = float("nan") if summary is None else summary.machine_error_rate
    trust = None
    if config.machine_label_weighting == training_pb2.MACHINE_LABEL_WEIGHTING_CALIBRATED_EPS:
        clipped = np.clip(eps, 0, 1)
        trust = trust_from_eps(clipped if calibration is None else calibration(clipped))
    all_data = ActDataset.from_arrays(inputs, machine, human, delta, pi, num_classes, trust=trust)
    val_rows = np.flatnonzero(val_mask & delta)
    validation = LabelledSet.from_arrays(
        all_data.subset(torch.from_numpy(val_rows)).inputs,
        human[val_rows],
        1.0 / pi[val_rows],
    )
    return PreparedData(
        train=all_data.subset(train_idx),
        validation=validation,
        skipped=skipped,
        num_classes=num_classes,
        calibration=calibration,
        eps_mean=float(eps.mean()),
        error_rate=error_rate,
        validation_machine=machine[val_rows],
        validation_eps=np.clip(eps[val_rows], 0.0, 1.0),
        validation_pi=pi[val_rows],
    )


def _stack(kind: InputKind, raws: list[Any]) -> Any:
    if kind is InputKind.IMAGE28:
        return np.stack(raws).astype(np.uint8)
    return list(raws)


def loss_kind(config: training_pb2.FitConfig) -> LossKind:
    """The loss a config asks for."""
    return LOSS_KINDS[config.loss]


def train_config(config: training_pb2.FitConfig, device: str, *, validate: bool) -> TrainConfig:
    """The optimisation settings of a resolved config (``validate``: score every epoch)."""
    return TrainConfig(
        learning_rate=config.learning_rate,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        device=device,
        validate_every_epoch=validate,
    )


def model_factory(
    config: training_pb2.FitConfig, num_classes: int
) -> Callable[[], torch.nn.Module]:
    """Builds fresh models of the config (``num_classes`` from the data, not the params)."""
    name = network_spec(config.model).name
    params = {k: v for k, v in config.params.items() if k != "num_classes"}

    def make_model() -> torch.nn.Module:
        return build_network(name, num_classes, params)

    return make_model
