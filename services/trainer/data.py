"""Training and validation data of a fit, as tensors.

An :class:`ActDataset` is the ACT data set of the paper (section 5.1): every
item has its model input, the machine label ``y_m``, the review indicator
``delta`` with its sampling probability ``pi``, and the human label ``y`` where
``delta = 1``. Inputs are a tensor (images, precomputed embeddings) or a list
of strings (models that tokenise themselves); :func:`take` indexes either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

#: Model inputs: a tensor with the item axis first, or one string per item.
Inputs = Tensor | Sequence[str]

#: Marks "no human label" in ``ActDataset.human``.
NO_LABEL = -1


def take(inputs: Inputs, index: Tensor) -> Inputs:
    """Rows ``index`` of the inputs (tensor indexing or a list of strings)."""
    if isinstance(inputs, Tensor):
        return inputs[index]
    return [inputs[i] for i in index.tolist()]


def input_count(inputs: Inputs) -> int:
    """Number of items in the inputs."""
    return int(inputs.shape[0]) if isinstance(inputs, Tensor) else len(inputs)


def _long(values: npt.ArrayLike | Tensor) -> Tensor:
    if isinstance(values, Tensor):
        return values.to(torch.int64)
    # A copy: label arrays of the data sets are read-only views, which torch
    # cannot wrap safely (and labels are small).
    return torch.tensor(np.asarray(values), dtype=torch.int64)


@dataclass(frozen=True)
class ActDataset:
    """The ACT data of one fit (all tensors on the CPU, item axis first)."""

    inputs: Inputs
    machine: Tensor  # int64, y_m
    human: Tensor  # int64, y where delta else NO_LABEL
    delta: Tensor  # bool
    pi: Tensor  # float32, probability delta was drawn with
    num_classes: int
    #: Per-row trust in the machine label, in [0, 1] (float32), or None (1 for
    #: every row): the ACT loss scales lambda by it row by row
    #: (:class:`services.trainer.loss.Objective`), e.g. ``1 - eps``.
    trust: Tensor | None = None

    @classmethod
    def from_arrays(
        cls,
        inputs: Inputs,
        machine: npt.ArrayLike | Tensor,
        human: npt.ArrayLike | Tensor,
        delta: npt.ArrayLike | Tensor,
        pi: npt.ArrayLike | Tensor,
        num_classes: int,
        trust: npt.ArrayLike | Tensor | None = None,
    ) -> ActDataset:
        """Validate and convert. ``human`` may hold anything where ``delta = 0``."""
        m = _long(machine)
        d = torch.as_tensor(np.asarray(delta), dtype=torch.bool)
        h = torch.where(d, _long(human), torch.full_like(m, NO_LABEL))
        p = torch.as_tensor(np.asarray(pi, dtype=np.float64), dtype=torch.float32)
        n = input_count(inputs)
        if not (m.shape == h.shape == d.shape == p.shape == (n,)):
            raise ValueError(
                f"lengths differ: inputs {n}, machine {tuple(m.shape)}, human {tuple(h.shape)}, "
                f"delta {tuple(d.shape)}, pi {tuple(p.shape)}"
            )
        if n and (int(m.min()) < 0 or int(m.max()) >= num_classes):
            raise ValueError(f"machine labels must be in [0, {num_classes})")
        if bool(d.any()):
            hd = h[d]
            if int(hd.min()) < 0 or int(hd.max()) >= num_classes:
                raise ValueError(f"human labels of reviewed items must be in [0, {num_classes})")
        if bool(torch.any((p < 0) | (p > 1) | torch.isnan(p))):
            raise ValueError("pi must be in [0, 1]")
        if bool(torch.any(d & (p <= 0))):
            raise ValueError("a reviewed item (delta = 1) has pi <= 0")
        t = None
        if trust is not None:
            t = torch.as_tensor(np.asarray(trust, dtype=np.float64), dtype=torch.float32)
            if t.shape != (n,):
                raise ValueError(f"trust has shape {tuple(t.shape)}, not ({n},)")
            if bool(torch.any((t < 0) | (t > 1) | torch.isnan(t))):
                raise ValueError("trust must be in [0, 1]")
        return cls(
            inputs=inputs, machine=m, human=h, delta=d, pi=p, num_classes=num_classes, trust=t
        )

    def __len__(self) -> int:
        return int(self.machine.shape[0])

    @property
    def reviewed(self) -> int:
        """Items with a human label (``sum delta``)."""
        return int(self.delta.sum())

    @property
    def human_filled(self) -> Tensor:
        """Human label where reviewed, machine label otherwise (the ACT data labels)."""
        return torch.where(self.delta, self.human, self.machine)

    @property
    def weight(self) -> Tensor:
        """``delta / pi`` (0 for unreviewed items)."""
        safe = torch.where(self.delta, self.pi, torch.ones_like(self.pi))
        return torch.where(self.delta, 1.0 / safe, torch.zeros_like(self.pi))

    def subset(self, index: Tensor) -> ActDataset:
        """The items at ``index`` (same classes)."""
        return ActDataset(
            inputs=take(self.inputs, index),
            machine=self.machine[index],
            human=self.human[index],
            delta=self.delta[index],
            pi=self.pi[index],
            num_classes=self.num_classes,
            trust=None if self.trust is None else self.trust[index],
        )

    def reviewed_only(self) -> ActDataset:
        """Only the ``delta = 1`` items (the human-only baseline's training set)."""
        return self.subset(torch.nonzero(self.delta).squeeze(1))


@dataclass(frozen=True)
class LabelledSet:
    """Inputs with human labels and optional weights: validation or test data.

    Hyper-parameters are selected on human labels only (never machine labels);
    ``weights`` lets a validation set drawn with unequal probabilities (the
    reviewed items, weighted by ``1/pi``) estimate accuracy on all items
    (a self-normalised Horvitz-Thompson estimate).
    """

    inputs: Inputs
    labels: Tensor  # int64
    weights: Tensor | None = None  # float, >= 0

    @classmethod
    def from_arrays(
        cls,
        inputs: Inputs,
        labels: npt.ArrayLike | Tensor,
        weights: npt.ArrayLike | Tensor | None = None,
    ) -> LabelledSet:
        """Validate and convert."""
        y = _long(labels)
        if y.shape != (input_count(inputs),):
            raise ValueError("inputs and labels differ in length")
        w = None
        if weights is not None:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=torch.float64)
            if w.shape != y.shape or bool(torch.any(w < 0)):
                raise ValueError("weights must be >= 0, one per item")
        return cls(inputs=inputs, labels=y, weights=w)

    def __len__(self) -> int:
        return int(self.labels.shape[0])
