"""The ACT loss and the paper's baseline losses, on per-example losses of any torch model.

Lin et al., "ACT as Human" (NeurIPS 2025), section 5.1, eq. 8, with the
power-tuning parameter lambda of appendix E (eqs. 21-23, after Gligoric et
al. 2025 and PPI++, Angelopoulos et al. 2023):

    L_ACT = 1/N sum_i ( lambda * l_m_i + (l_h_i - lambda * l_m_i) * delta_i / pi_i )

``l_m_i`` is the loss of the model's prediction against the machine label,
``l_h_i`` against the human label (known only where ``delta_i = 1``),
``delta_i ~ Bernoulli(pi_i)`` the review indicator and ``pi_i = pi_B(eps_i)``
the probability with which it was drawn. The three sampling rules
(normalization, exponential weighting, thresholding) differ only in ``pi``, so
one formula serves all three (eqs. 21, 22, 23). With thresholding
(``pi in {0, 1}``) and ``lambda = 1`` it is cross-entropy on the "ACT data"
(human label where reviewed, machine label otherwise); ``lambda = 0`` ignores
machine labels entirely.

Proposition 5.1: for fixed model parameters and ``pi_i > 0`` wherever a
human label exists with positive probability, ``E_delta[L_ACT] = 1/N sum_i
l_h_i`` (unbiased) with the variance of eq. 9 (:func:`act_loss_variance`).
Items with ``pi_i = 0`` are never reviewed: their ``delta_i`` is 0 and they
contribute ``lambda * l_m_i`` with no correction, which is where the
estimator is biased (thresholding without an exploration floor).

Cost: both per-example losses come from one ``log_softmax`` of the same
logits (:func:`per_example_losses`), so the ACT loss costs one extra gather
over plain cross-entropy; the model's forward and backward pass dominate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor


class LossKind(enum.StrEnum):
    """Which labels and which loss a fit uses (paper, section 5.2 and Table 3)."""

    #: Baseline: cross-entropy on human labels only (the ``delta = 1`` items;
    #: with every item reviewed it is the paper's fully human-labelled reference).
    HUMAN_ONLY = "human_only"
    #: Baseline: cross-entropy on machine labels, ignoring reviews.
    MACHINE_ONLY = "machine_only"
    #: Baseline: unweighted cross-entropy on the ACT data set (human label where
    #: ``delta = 1``, machine label otherwise).
    ACT_DATA_CE = "act_data_ce"
    #: The ACT loss (eq. 8 with power tuning, appendix E).
    ACT = "act"
    #: The ACT loss with a non-negative machine part (:func:`act_loss_nonneg`).
    ACT_NONNEG = "act_nonneg"


def per_example_losses(
    logits: Tensor, machine_labels: Tensor, human_labels: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-example cross-entropy against machine and human labels from one ``log_softmax``.

    ``human_labels`` must hold a valid class index in every row (callers fill
    rows without a human label with the machine label; those rows are masked
    out by ``delta = 0`` in :func:`act_loss`). Returns ``(l_m, l_h)``, shape (N,).
    """
    log_probs = F.log_softmax(logits, dim=-1)
    both = -log_probs.gather(1, torch.stack((machine_labels, human_labels), dim=1))
    return both[:, 0], both[:, 1]


def importance_weights(delta: Tensor, pi: Tensor) -> Tensor:
    """``delta_i / pi_i`` with ``0`` where ``delta_i = 0`` (also where ``pi_i = 0``).

    A reviewed item must have been reviewable: ``delta_i = 1`` with
    ``pi_i <= 0`` means the sampling record is corrupt, and is refused rather
    than turned into an infinite weight.
    """
    d = delta.to(dtype=torch.bool)
    if d.shape != pi.shape:
        raise ValueError(f"delta {tuple(d.shape)} and pi {tuple(pi.shape)} differ in shape")
    if bool(torch.any(d & (pi <= 0))):
        raise ValueError("an item with delta = 1 has pi <= 0: its sampling record is corrupt")
    if bool(torch.any((pi < 0) | (pi > 1) | torch.isnan(pi))):
        raise ValueError("pi must be in [0, 1]")
    safe = torch.where(d, pi, torch.ones_like(pi))
    return torch.where(d, 1.0 / safe, torch.zeros_like(pi))


def act_loss_weighted(
    loss_machine: Tensor, loss_human: Tensor, weight: Tensor, power_lambda: float
) -> Tensor:
    """Eq. 8 with power tuning, given precomputed weights ``w_i = delta_i / pi_i``.

    The hot path of training: no validation and no host synchronisation.
    Rows with ``w_i = 0`` contribute ``lambda * l_m_i`` only; ``torch.where``
    (not a product) keeps a non-finite ``l_h`` of an unreviewed row out of
    the result and its gradient.
    """
    scaled_machine = power_lambda * loss_machine
    correction = torch.where(
        weight != 0, (loss_human - scaled_machine) * weight, torch.zeros_like(weight)
    )
    return (scaled_machine + correction).mean()


def act_loss(
    loss_machine: Tensor,
    loss_human: Tensor,
    delta: Tensor,
    pi: Tensor,
    power_lambda: float = 1.0,
) -> Tensor:
    """The ACT loss (paper eq. 8; appendix E eqs. 21-23 with power tuning).

    ``mean_i( lambda * l_m_i + (l_h_i - lambda * l_m_i) * delta_i / pi_i )``
    over per-example losses of any model (``reduction='none'``). ``pi_i`` may
    be 0 only where ``delta_i = 0``. ``power_lambda`` in [0, 1]: 0 ignores
    machine labels, 1 uses them fully.
    """
    if not 0.0 <= power_lambda <= 1.0:
        raise ValueError("power_lambda must be in [0, 1]")
    if loss_machine.shape != loss_human.shape or loss_machine.shape != delta.shape:
        raise ValueError("loss_machine, loss_human and delta must have the same shape")
    weight = importance_weights(delta, pi.to(loss_machine.dtype))
    return act_loss_weighted(loss_machine, loss_human, weight, power_lambda)


def act_loss_fused(
    logits: Tensor,
    machine_labels: Tensor,
    human_labels: Tensor,
    weight: Tensor,
    power_lambda: float | Tensor,
) -> Tensor:
    """Eq. 8 for cross-entropy losses as ONE cross-entropy with per-example target weights.

    ``lambda*l_m + (l_h - lambda*l_m) * w = lambda*(1 - w) * l_m + w * l_h`` and
    ``l_y = -log softmax(z)_y``, so the ACT loss is ``-(1/N) sum_i sum_c T_ic
    log softmax(z_i)_c`` with ``T_i = lambda*(1 - w_i) e_{y_m} + w_i e_{y_h}``:
    PyTorch's fused cross-entropy with "probability" targets (which need not be
    normalised or non-negative). Building ``T`` needs no gradient, so the ACT
    loss costs one fused kernel pair like plain cross-entropy, instead of a dozen
    small autograd nodes. Requires ``human_labels`` valid in every row (rows
    with ``w = 0`` may hold anything in range, e.g. the machine label).
    ``power_lambda`` may be one value per row (:func:`trusted_lambda`).
    """
    with torch.no_grad():
        coef_machine = (power_lambda * (1.0 - weight)).to(logits.dtype).unsqueeze(1)
        target = torch.zeros_like(logits)
        target.scatter_add_(1, machine_labels.unsqueeze(1), coef_machine)
        target.scatter_add_(1, human_labels.unsqueeze(1), weight.to(logits.dtype).unsqueeze(1))
    return F.cross_entropy(logits, target)


def act_loss_nonneg(
    loss_machine: Tensor,
    loss_human: Tensor,
    weight: Tensor,
    power_lambda: float,
    *,
    beta: float = 0.0,
    gamma: float = 1.0,
) -> Tensor:
    """Eq. 8 split into a human and a machine part, the machine part kept non-negative.

    Beyond the paper. ``L_ACT = R_h + R_m`` with ``R_h = mean(w_i l_h_i)`` and
    ``R_m = mean(lambda (1 - w_i) l_m_i)``; ``w_i = delta_i / pi_i > 1`` makes
    a reviewed item's machine term negative, so with a small pi (the
    exponential rule with a small floor) a minibatch's ``R_m`` can be very
    negative and the loss unbounded below: the model then gains by making
    ``l_m`` of the reviewed items large, i.e. by fitting *away* from machine
    labels. ``R_m`` estimates a non-negative quantity (the machine-label risk
    of the unreviewed items), the situation of non-negative PU learning
    (Kiryo, Niu, du Plessis and Sugiyama, "Positive-unlabeled learning with
    non-negative risk estimator", NeurIPS 2017, Algorithm 1): where
    ``R_m >= -beta`` this is the ACT loss unchanged; below, it returns
    ``-gamma * R_m``, whose gradient pushes ``R_m`` back up (nnPU's defensive
    step) instead of exploiting the negative estimate. Hence the value is
    never below ``-beta``. ``E[L]`` is no longer exactly the human loss where
    the clipping binds (the price of bounding it, as in nnPU).
    """
    if not 0.0 <= power_lambda <= 1.0:
        raise ValueError("power_lambda must be in [0, 1]")
    if beta < 0.0 or gamma < 0.0:
        raise ValueError("beta and gamma must be >= 0")
    human_part = torch.where(weight != 0, loss_human * weight, torch.zeros_like(weight)).mean()
    machine_part = (power_lambda * (1.0 - weight) * loss_machine).mean()
    # torch.where, not a Python if: no host synchronisation on the training path.
    return torch.where(machine_part >= -beta, human_part + machine_part, -gamma * machine_part)


def act_loss_variance(
    loss_machine: Tensor, loss_human: Tensor, pi: Tensor, power_lambda: float = 1.0
) -> Tensor:
    """Variance of the ACT loss over the draws of delta, for fixed losses (eq. 9).

    With the losses held fixed (the randomness is the sampling only, as in the
    Monte Carlo check), ``Var(Z_i) = (l_h_i - lambda*l_m_i)^2 (1/pi_i - 1)``
    and ``Var(L_ACT) = 1/N^2 sum_i Var(Z_i)``: the second term of eq. 9 (the
    first, ``Var(l)``, is the sampling variance of the data, absent here).
    ``lambda = 1`` gives the paper's form; items with ``pi_i = 0`` add 0.
    """
    diff = loss_human - power_lambda * loss_machine
    safe = torch.where(pi > 0, pi, torch.ones_like(pi))
    per_item = torch.where(pi > 0, diff.square() * (1.0 / safe - 1.0), torch.zeros_like(pi))
    n = loss_machine.numel()
    return per_item.sum() / (n * n)


def human_only_loss(logits: Tensor, human_labels: Tensor, delta: Tensor) -> Tensor:
    """Baseline "Human only": plain cross-entropy over the reviewed (``delta = 1``) items."""
    d = delta.to(dtype=torch.bool)
    if not bool(d.any()):
        return logits.sum() * 0.0  # keeps the graph; nothing to learn from
    return F.cross_entropy(logits[d], human_labels[d])


def machine_only_loss(logits: Tensor, machine_labels: Tensor) -> Tensor:
    """Baseline "Machine only": plain cross-entropy on the machine labels of all items."""
    return F.cross_entropy(logits, machine_labels)


def act_data_labels(machine_labels: Tensor, human_labels: Tensor, delta: Tensor) -> Tensor:
    """The ACT data set's labels: the human label where ``delta = 1``, else the machine label."""
    return torch.where(delta.to(dtype=torch.bool), human_labels, machine_labels)


def act_data_ce_loss(
    logits: Tensor, machine_labels: Tensor, human_labels: Tensor, delta: Tensor
) -> Tensor:
    """Baseline "ACT data - Cross-entropy": unweighted CE on the ACT data labels.

    Appendix E: the thresholding ACT loss with ``lambda = 1``.
    """
    return F.cross_entropy(logits, act_data_labels(machine_labels, human_labels, delta))


def trust_from_eps(eps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Trust in each machine label: ``1 - eps`` clipped to [0, 1] (:func:`trusted_lambda`)."""
    return np.clip(1.0 - np.asarray(eps, dtype=np.float64), 0.0, 1.0)


def trusted_lambda(power_lambda: float, trust: Tensor) -> Tensor:
    """Per-row lambda ``lambda_i = lambda * t_i`` from a trust ``t_i`` in [0, 1] of each
    machine label (beyond the paper).

    With ``t_i = 1 - eps_i`` and a calibrated ``eps`` this is importance
    reweighting for label noise (Liu and Tao, "Classification with noisy labels
    by importance reweighting", IEEE TPAMI 38(3), 2016): an unreviewed row's
    machine-label loss counts by the probability that its label is right, so
    the shared annotator-critic mistakes the critic is unsure of weigh less.
    Eq. 8 stays unbiased for any ``lambda_i`` fixed before ``delta`` is drawn
    (``E[delta_i / pi_i] = 1`` row by row, as in Proposition 5.1), so this
    changes only the variance and, where ``pi_i = 0``, the bias of the
    unreviewed rows' term.
    """
    if not 0.0 <= power_lambda <= 1.0:
        raise ValueError("power_lambda must be in [0, 1]")
    return power_lambda * trust


@dataclass(frozen=True, slots=True)
class Objective:
    """A training objective: the loss kind and, for the ACT loss, lambda.

    The sampling rule is not part of the objective: it acts through the
    ``pi`` stored with every example (eqs. 21-23 are eq. 8 with different pi).
    """

    kind: LossKind
    power_lambda: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.power_lambda <= 1.0:
            raise ValueError("power_lambda must be in [0, 1]")

    def batch_loss(
        self,
        logits: Tensor,
        machine_labels: Tensor,
        human_filled: Tensor,
        weight: Tensor,
        delta: Tensor,
        trust: Tensor | None = None,
    ) -> Tensor:
        """Loss of one minibatch (the minibatch mean estimates the 1/N sum).

        ``human_filled`` holds the human label where ``delta`` and the machine
        label elsewhere (which is also the ACT data label); ``weight`` is
        ``delta / pi`` (:func:`importance_weights`); ``trust`` (ACT loss only)
        scales lambda row by row (:func:`trusted_lambda`).
        """
        if self.kind is LossKind.ACT:
            lam = self.power_lambda if trust is None else trusted_lambda(self.power_lambda, trust)
            return act_loss_fused(logits, machine_labels, human_filled, weight, lam)
        if self.kind is LossKind.ACT_NONNEG:
            loss_m, loss_h = per_example_losses(logits, machine_labels, human_filled)
            return act_loss_nonneg(loss_m, loss_h, weight, self.power_lambda)
        if self.kind is LossKind.MACHINE_ONLY:
            return F.cross_entropy(logits, machine_labels)
        if self.kind is LossKind.ACT_DATA_CE:
            return F.cross_entropy(logits, human_filled)
        # HUMAN_ONLY: the data loader keeps only delta = 1 rows, so this is a plain CE;
        # human_only_loss masks anyway for callers that pass mixed batches.
        return human_only_loss(logits, human_filled, delta)

    @property
    def uses_only_reviewed(self) -> bool:
        """True when rows without a human label carry no signal (human-only)."""
        return self.kind is LossKind.HUMAN_ONLY
