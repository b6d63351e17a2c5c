"""Machine labels and error estimates for the training items of an experiment.

In the paper the annotator and the criticizer are MLLMs (GPT-4o with CoT by
default, section 5.2). Offline, the pair is the few-shot local annotator and
critic of :mod:`services.fewshot` (a different model for each role: cross-
criticism), which see only a small seed of human-labelled examples per class
drawn from the experiment's seed pool. Any other source plugs in as an
:class:`AnnotationProvider`, e.g. labels and critiques read back from a run
of the streaming pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.experiments.data import ExperimentData


@dataclass(frozen=True)
class MachineAnnotations:
    """``y_m`` and ``eps`` for every training item, in ``data.train`` order."""

    labels: npt.NDArray[np.int64]
    eps: npt.NDArray[np.float64]
    annotator: str = ""
    critic: str = ""
    #: Human labels the annotator and critic saw (their few-shot seed), if any.
    seed_size: int = 0

    def __post_init__(self) -> None:
        if self.labels.shape != self.eps.shape or self.labels.ndim != 1:
            raise ValueError("labels and eps must be 1-D arrays of the same length")
        if self.eps.size and (np.isnan(self.eps).any() or self.eps.min() < 0 or self.eps.max() > 1):
            raise ValueError("eps must be in [0, 1]")


class AnnotationProvider(Protocol):
    """Annotates and critiques the training items of an experiment."""

    def __call__(self, data: ExperimentData) -> MachineAnnotations:
        """Machine labels and eps for ``data.train``, using at most ``data.seed_pool`` labels."""
        ...


def fewshot_provider(
    per_class: int | None = None,
    seed: int = 0,
    *,
    annotator: str | None = None,
    critic: str | None = None,
) -> AnnotationProvider:
    """The few-shot annotator/critic pair of :mod:`services.fewshot` as a provider.

    ``per_class=None`` uses the pair's defaults (``services.fewshot.pair``:
    the Fashion-MNIST seed size that puts the annotator near GPT-4o's 78.19%).
    The seed is drawn from ``data.seed_pool`` only.
    """

    def provide(data: ExperimentData) -> MachineAnnotations:
        import numpy as np

        from services.fewshot.pair import build_pair
        from services.fewshot.pools import LabelledPool

        pool_raw = data.seed_pool.raw
        pool = LabelledPool(
            name=f"{data.name}/seed-pool",
            modality=data.modality,
            label_names=data.class_names,
            ids=data.seed_pool.ids,
            labels=data.seed_pool.labels,
            texts=pool_raw if isinstance(pool_raw, tuple) else (),
            images=None if isinstance(pool_raw, tuple) else pool_raw,
        )
        pair = build_pair(pool, per_class=per_class, seed=seed, annotator=annotator, critic=critic)
        raw = data.train.raw
        inputs = list(raw) if isinstance(raw, tuple) else raw
        labels = pair.annotator.model.predict_proba(inputs).argmax(axis=1).astype(np.int64)
        critic_proba = pair.critic.model.predict_proba(inputs)
        # eps = P(label wrong | item, given label) = 1 - P_critic(given label | item),
        # as FewShotCritic.eps_many computes it for protobuf items.
        eps = np.clip(1.0 - critic_proba[np.arange(labels.size), labels], 0.0, 1.0)
        return MachineAnnotations(
            labels=labels,
            eps=eps.astype(np.float64),
            annotator=pair.annotator.name,
            critic=pair.critic.name,
            seed_size=len(pair.selection),
        )

    return provide
