"""A small synthetic experiment: learnable 28x28 images, a noisy annotator, a critic."""

from __future__ import annotations

import numpy as np

from services.experiments.annotations import MachineAnnotations
from services.experiments.data import ExperimentData, Split
from tests.trainer.support import blob_image

CLASSES = ("a", "b", "c", "d")


def _split(prefix: str, n: int, rng: np.random.Generator) -> Split:
    labels = rng.integers(0, len(CLASSES), n).astype(np.int64)
    images = np.stack([blob_image(int(c), rng) for c in labels])
    return Split(ids=tuple(f"{prefix}-{i}" for i in range(n)), raw=images, labels=labels)


def synthetic_data(n_train: int = 400, seed: int = 0) -> ExperimentData:
    """Train/validation/test/seed-pool splits of the blob task (name 'fashion')."""
    rng = np.random.default_rng(seed)
    return ExperimentData(
        name="fashion",
        modality="image",
        class_names=CLASSES,
        train=_split("train", n_train, rng),
        validation=_split("val", 120, rng),
        test=_split("test", 300, rng),
        seed_pool=_split("pool", 40, rng),
    )


def synthetic_annotations(data: ExperimentData, error_rate: float = 0.25) -> MachineAnnotations:
    """A systematic annotator (class c -> c+1) and a critic that mostly sees its errors."""
    rng = np.random.default_rng(1)
    human = data.train.labels
    wrong = rng.random(human.size) < error_rate
    machine = np.where(wrong, (human + 1) % len(CLASSES), human).astype(np.int64)
    eps = np.where(wrong, rng.beta(5, 2, human.size), rng.beta(1.5, 6, human.size))
    return MachineAnnotations(
        labels=machine, eps=eps, annotator="synthetic", critic="synthetic-critic", seed_size=0
    )
