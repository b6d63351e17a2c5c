"""Per-row trust in machine labels (importance reweighting): unbiasedness, the
reweighting property, the fused hot path, and where trust is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from services.trainer.data import ActDataset
from services.trainer.fit import TrainConfig, new_state, train
from services.trainer.loss import (
    LossKind,
    Objective,
    act_loss_fused,
    importance_weights,
    per_example_losses,
    trusted_lambda,
)

N = 300
DRAWS = 20_000
SIGMA = 4.0


def _problem(seed: int = 0):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, 5, generator=g, dtype=torch.float64) * 2.0
    human = torch.randint(0, 5, (N,), generator=g)
    wrong = torch.rand(N, generator=g) < 0.25
    machine = torch.where(wrong, (human + 1 + torch.randint(0, 4, (N,), generator=g)) % 5, human)
    pi = torch.rand(N, generator=g, dtype=torch.float64) * 0.8 + 0.1
    trust = torch.rand(N, generator=g, dtype=torch.float64)
    return logits, machine, human, pi, trust


def test_per_row_lambda_keeps_the_act_loss_unbiased_for_the_human_loss() -> None:
    """Proposition 5.1 row by row: E[delta/pi] = 1, so any lambda_i fixed before the
    draw leaves E_delta[L] = mean(l_h) (Monte Carlo over seeded draws of delta)."""
    logits, machine, human, pi, trust = _problem()
    l_m, l_h = per_example_losses(logits, machine, human)
    lam = trusted_lambda(0.8, trust)
    g = torch.Generator().manual_seed(1)
    out = torch.empty(DRAWS, dtype=torch.float64)
    for start in range(0, DRAWS, 2000):
        delta = torch.rand(2000, N, generator=g, dtype=torch.float64) < pi
        w = torch.where(delta, 1.0 / pi, 0.0)
        out[start : start + 2000] = (lam * l_m + (l_h - lam * l_m) * w).mean(dim=1)
    # Var of the row sum: sum_i (l_h - lam_i l_m)^2 (1 - pi) / pi, over N^2 (eq. 9, per row).
    var = (((l_h - lam * l_m) ** 2) * (1 - pi) / pi).sum().item() / N**2
    se = math.sqrt(var / DRAWS)
    assert abs(out.mean().item() - l_h.mean().item()) <= SIGMA * se


def test_trust_from_a_calibrated_eps_moves_weight_off_wrong_labels() -> None:
    """Liu and Tao (2016): weighting each machine label by P(correct) = 1 - eps puts
    E[eps (1 - eps)] / E[1 - eps] of the weight on wrong labels, less than E[eps]."""
    rng = np.random.default_rng(3)
    eps = rng.beta(0.6, 3.0, 200_000)
    wrong = rng.random(eps.size) < eps  # calibrated: P(wrong | eps) = eps
    trust = trusted_lambda(1.0, torch.as_tensor(1.0 - eps)).numpy()
    share = float((trust * wrong).sum() / trust.sum())
    expected = float(np.mean(eps * (1 - eps)) / np.mean(1 - eps))
    assert share == pytest.approx(expected, abs=3e-3)
    assert share < float(wrong.mean()) - 0.02  # plainly less noise than unweighted


def test_trust_one_is_the_act_loss_and_the_fused_path_matches_the_formula() -> None:
    logits, machine, human, pi, trust = _problem(5)
    logits = logits.float().requires_grad_(True)
    delta = torch.rand(N, generator=torch.Generator().manual_seed(6)) < pi
    filled = torch.where(delta, human, machine)
    w = importance_weights(delta, pi.float())
    plain = act_loss_fused(logits, machine, filled, w, 0.7)
    ones = act_loss_fused(logits, machine, filled, w, trusted_lambda(0.7, torch.ones(N)))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    lam = trusted_lambda(0.7, trust.float())
    l_m, l_h = per_example_losses(logits, machine, filled)
    ref = (lam * l_m + torch.where(delta, (l_h - lam * l_m) * w, 0.0)).mean()
    fused = Objective(LossKind.ACT, 0.7).batch_loss(
        logits, machine, filled, w, delta, trust.float()
    )
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5)
    (g_ref,) = torch.autograd.grad(ref, logits)
    (g_fused,) = torch.autograd.grad(fused, logits)
    assert torch.allclose(g_ref, g_fused, atol=1e-6)


def test_trust_is_validated_carried_by_subsets_and_refused_by_other_losses() -> None:
    x = torch.randn(6, 4)
    machine, human = [0, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 0]
    delta, pi = [1, 0, 1, 0, 0, 0], [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="trust must be in"):
        ActDataset.from_arrays(x, machine, human, delta, pi, 2, trust=[1, 1, 1, 1, 1, 1.5])
    with pytest.raises(ValueError, match="trust has shape"):
        ActDataset.from_arrays(x, machine, human, delta, pi, 2, trust=[1.0])
    data = ActDataset.from_arrays(
        x, machine, human, delta, pi, 2, trust=[0.1 * i for i in range(6)]
    )
    sub = data.subset(torch.tensor([5, 1]))
    assert sub.trust is not None and sub.trust.tolist() == pytest.approx([0.5, 0.1])
    config = TrainConfig(learning_rate=0.01, epochs=1, batch_size=4, seed=0, device="cpu")
    model = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="ACT loss only"):
        train(data, Objective(LossKind.ACT_DATA_CE), config, new_state(model, config))
    trained = train(data, Objective(LossKind.ACT, 1.0), config, new_state(model, config))
    assert trained.epoch == 1
