"""The ACT loss (paper eq. 8, appendix E) and the baselines: exact identities and
Monte Carlo unbiasedness over the sampling, with the tolerance of eq. 9."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.trainer.loss import (
    LossKind,
    Objective,
    act_data_ce_loss,
    act_data_labels,
    act_loss,
    act_loss_nonneg,
    act_loss_variance,
    human_only_loss,
    importance_weights,
    machine_only_loss,
    per_example_losses,
)
from services.trainer.sampling import (
    budget_quantile,
    exponential_pi,
    normalization_pi,
    threshold_pi,
)

N = 300  # items
DRAWS = 20_000  # Monte Carlo draws of delta
SIGMA = 4.0  # a correct estimator fails a 4-sigma check ~6e-5 of the time
BUDGET = 0.2


def _fixed_losses(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Per-example losses of a fixed model and eps of a critic that sees the errors."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, 5, generator=g, dtype=torch.float64) * 2.0
    human = torch.randint(0, 5, (N,), generator=g)
    wrong = torch.rand(N, generator=g) < 0.25  # the machine is wrong on ~25% of items
    machine = torch.where(wrong, (human + 1 + torch.randint(0, 4, (N,), generator=g)) % 5, human)
    l_m, l_h = per_example_losses(logits, machine, human)
    rng = np.random.default_rng(seed)
    # A useful but imperfect critic: higher eps where the machine is wrong.
    eps = np.clip(np.where(wrong.numpy(), rng.beta(5, 2, N), rng.beta(1.5, 6, N)), 1e-3, 1.0)
    return l_m, l_h, eps


def _pi(rule: str, eps: np.ndarray, pi_min: float) -> torch.Tensor:
    b = BUDGET * N
    if rule == "normalization":
        pi = normalization_pi(eps, b)
    elif rule == "exponential":
        pi = exponential_pi(eps, budget_quantile(eps, BUDGET), 10.0)
    else:
        pi = threshold_pi(eps, budget_quantile(eps, BUDGET))
    return torch.as_tensor(np.clip(np.maximum(pi, pi_min), 0.0, 1.0), dtype=torch.float64)


def _monte_carlo(
    l_m: torch.Tensor, l_h: torch.Tensor, pi: torch.Tensor, lam: float, seed: int = 1
) -> torch.Tensor:
    """The ACT loss for DRAWS independent draws of delta ~ Bernoulli(pi)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(DRAWS, dtype=torch.float64)
    for start in range(0, DRAWS, 2000):
        delta = torch.rand(2000, N, generator=g, dtype=torch.float64) < pi
        w = torch.where(delta, 1.0 / torch.where(pi > 0, pi, 1.0), 0.0)
        out[start : start + 2000] = (lam * l_m + (l_h - lam * l_m) * w).mean(dim=1)
    # Spot-check the vectorised form against the library function on one draw.
    delta0 = torch.rand(N, generator=g, dtype=torch.float64) < pi
    lib = act_loss(l_m, l_h, delta0, pi, lam)
    w0 = torch.where(delta0, 1.0 / torch.where(pi > 0, pi, 1.0), 0.0)
    assert lib.item() == pytest.approx(
        (lam * l_m + (l_h - lam * l_m) * w0).mean().item(), rel=1e-12
    )
    return out


@pytest.mark.parametrize("rule", ["normalization", "exponential", "threshold"])
@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_act_loss_is_unbiased_for_the_human_loss(rule: str, lam: float) -> None:
    """Proposition 5.1: E_delta[L_ACT] = mean(l_h) when every pi > 0 (floor 0.05 where needed)."""
    l_m, l_h, eps = _fixed_losses()
    pi = _pi(rule, eps, pi_min=0.05)
    assert bool((pi > 0).all())
    samples = _monte_carlo(l_m, l_h, pi, lam)
    truth = l_h.mean().item()
    var = act_loss_variance(l_m, l_h, pi, lam).item()  # eq. 9 with the losses held fixed
    se = math.sqrt(var / DRAWS)
    assert abs(samples.mean().item() - truth) <= SIGMA * se, (samples.mean().item(), truth, se)
    # The empirical variance matches eq. 9: (DRAWS-1) s^2 / var ~ chi2(DRAWS-1), sd ~ sqrt(2/DRAWS).
    ratio = samples.var(unbiased=True).item() / var
    assert abs(ratio - 1.0) <= SIGMA * math.sqrt(2.0 / DRAWS), ratio


def test_thresholding_without_a_floor_is_biased_where_pi_is_zero() -> None:
    """pi = 0 items are never reviewed: they contribute lambda*l_m, never corrected."""
    l_m, l_h, eps = _fixed_losses()
    lam = 0.8
    pi = _pi("threshold", eps, pi_min=0.0)
    assert bool((pi == 0).any())
    samples = _monte_carlo(l_m, l_h, pi, lam)
    # With pi in {0, 1} the loss is deterministic ...
    assert samples.std().item() == pytest.approx(0.0, abs=1e-12)
    assert act_loss_variance(l_m, l_h, pi, lam).item() == 0.0
    # ... and its bias is exactly the uncorrected machine term of the pi = 0 items.
    never = pi == 0
    bias = ((lam * l_m - l_h) * never).sum().item() / N
    assert samples.mean().item() - l_h.mean().item() == pytest.approx(bias, rel=1e-9)
    assert abs(bias) > 0.01


def test_normalization_without_a_floor_is_unbiased_when_every_eps_is_positive() -> None:
    l_m, l_h, eps = _fixed_losses(seed=3)
    pi = _pi("normalization", eps, pi_min=0.0)
    samples = _monte_carlo(l_m, l_h, pi, 1.0, seed=5)
    se = math.sqrt(act_loss_variance(l_m, l_h, pi, 1.0).item() / DRAWS)
    assert abs(samples.mean().item() - l_h.mean().item()) <= SIGMA * se


def test_lambda_zero_ignores_machine_labels() -> None:
    l_m, l_h, eps = _fixed_losses()
    pi = _pi("exponential", eps, 0.05)
    delta = torch.rand(N, generator=torch.Generator().manual_seed(2), dtype=torch.float64) < pi
    base = act_loss(l_m, l_h, delta, pi, 0.0)
    assert act_loss(l_m * 7.0 + 3.0, l_h, delta, pi, 0.0).item() == pytest.approx(base.item())
    assert base.item() == pytest.approx((l_h * delta / pi).mean().item())


def test_threshold_with_lambda_one_is_cross_entropy_on_act_data() -> None:
    """Appendix E: the thresholding ACT loss with lambda = 1 is CE on the ACT data."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(64, 10, generator=g, requires_grad=True)
    machine = torch.randint(0, 10, (64,), generator=g)
    human = torch.randint(0, 10, (64,), generator=g)
    delta = torch.rand(64, generator=g) < 0.3
    pi = delta.float()  # thresholding: pi = 1 for reviewed items, 0 otherwise
    l_m, l_h = per_example_losses(logits, machine, torch.where(delta, human, machine))
    ours = act_loss(l_m, l_h, delta, pi, 1.0)
    ce = act_data_ce_loss(logits, machine, human, delta)
    assert ours.item() == pytest.approx(ce.item(), rel=1e-6)
    (g1,) = torch.autograd.grad(ours, logits, retain_graph=True)
    (g2,) = torch.autograd.grad(ce, logits)
    assert torch.allclose(g1, g2, atol=1e-7)
    # lambda < 1 down-weights exactly the unreviewed (machine) items.
    lam = 0.6
    expected = (torch.where(delta, l_h, lam * l_m)).mean()
    assert act_loss(l_m, l_h, delta, pi, lam).item() == pytest.approx(expected.item(), rel=1e-6)


def test_per_example_losses_match_cross_entropy() -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(32, 4, generator=g)
    a, b = torch.randint(0, 4, (32,), generator=g), torch.randint(0, 4, (32,), generator=g)
    l_a, l_b = per_example_losses(logits, a, b)
    assert torch.allclose(l_a, F.cross_entropy(logits, a, reduction="none"), atol=1e-6)
    assert torch.allclose(l_b, F.cross_entropy(logits, b, reduction="none"), atol=1e-6)


def test_pi_zero_is_allowed_only_where_delta_is_zero() -> None:
    ones = torch.ones(3)
    ok = act_loss(
        ones, ones, torch.tensor([True, False, False]), torch.tensor([0.5, 0.0, 0.0]), 0.5
    )
    assert math.isfinite(ok.item())
    with pytest.raises(ValueError, match="corrupt"):
        act_loss(ones, ones, torch.tensor([True, False, False]), torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        act_loss(ones, ones, torch.tensor([True, False, False]), torch.tensor([1.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="power_lambda"):
        act_loss(ones, ones, torch.tensor([True, False, False]), torch.ones(3), 1.5)
    assert importance_weights(torch.tensor([True, False]), torch.tensor([0.25, 0.0])).tolist() == [
        4.0,
        0.0,
    ]


def test_an_unreviewed_row_cannot_poison_the_loss_or_its_gradient() -> None:
    """Rows without a human label may carry any l_h (even inf): torch.where masks them."""
    l_m = torch.tensor([1.0, 2.0], requires_grad=True)
    l_h = torch.tensor([0.5, float("inf")], requires_grad=True)
    loss = act_loss(l_m, l_h, torch.tensor([True, False]), torch.tensor([0.5, 0.0]), 0.5)
    loss.backward()
    assert math.isfinite(loss.item())
    assert l_m.grad is not None and l_h.grad is not None
    assert torch.isfinite(l_m.grad).all() and torch.isfinite(l_h.grad).all()
    assert l_h.grad[1].item() == 0.0


def test_baselines() -> None:
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(20, 3, generator=g)
    machine = torch.randint(0, 3, (20,), generator=g)
    human = torch.randint(0, 3, (20,), generator=g)
    delta = torch.arange(20) % 4 == 0
    assert human_only_loss(logits, human, delta).item() == pytest.approx(
        F.cross_entropy(logits[delta], human[delta]).item()
    )
    assert human_only_loss(logits, human, torch.zeros(20, dtype=torch.bool)).item() == 0.0
    assert machine_only_loss(logits, machine).item() == pytest.approx(
        F.cross_entropy(logits, machine).item()
    )
    labels = act_data_labels(machine, human, delta)
    assert labels[delta].tolist() == human[delta].tolist()
    assert labels[~delta].tolist() == machine[~delta].tolist()


@pytest.mark.parametrize("kind", list(LossKind))
def test_objective_dispatch(kind: LossKind) -> None:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(16, 4, generator=g)
    machine = torch.randint(0, 4, (16,), generator=g)
    human = torch.randint(0, 4, (16,), generator=g)
    delta = torch.arange(16) % 2 == 0
    filled = torch.where(delta, human, machine)
    pi = torch.where(delta, 0.5, 0.25)
    w = importance_weights(delta, pi)
    got = Objective(kind, 0.7).batch_loss(logits, machine, filled, w, delta).item()
    l_m, l_h = per_example_losses(logits, machine, filled)
    want = {
        LossKind.ACT: act_loss(l_m, l_h, delta, pi, 0.7).item(),
        LossKind.ACT_NONNEG: act_loss_nonneg(l_m, l_h, w, 0.7).item(),
        LossKind.MACHINE_ONLY: F.cross_entropy(logits, machine).item(),
        LossKind.ACT_DATA_CE: F.cross_entropy(logits, filled).item(),
        LossKind.HUMAN_ONLY: F.cross_entropy(logits[delta], human[delta]).item(),
    }[kind]
    assert got == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError):
        Objective(kind, -0.1)


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
def test_fused_act_loss_matches_the_formula_with_gradients(lam: float) -> None:
    """The training hot path (one cross-entropy with weighted targets) equals eq. 8."""
    from services.trainer.loss import act_loss_fused

    g = torch.Generator().manual_seed(8)
    logits = torch.randn(50, 6, generator=g, requires_grad=True)
    machine = torch.randint(0, 6, (50,), generator=g)
    human = torch.randint(0, 6, (50,), generator=g)
    delta = torch.rand(50, generator=g) < 0.4
    pi = torch.where(delta, torch.rand(50, generator=g) * 0.9 + 0.05, torch.zeros(50))
    filled = torch.where(delta, human, machine)
    l_m, l_h = per_example_losses(logits, machine, filled)
    ref = act_loss(l_m, l_h, delta, pi, lam)
    fused = act_loss_fused(logits, machine, filled, importance_weights(delta, pi), lam)
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5)
    (g_ref,) = torch.autograd.grad(ref, logits)
    (g_fused,) = torch.autograd.grad(fused, logits)
    assert torch.allclose(g_ref, g_fused, atol=1e-6)


def _split_parts(l_m: torch.Tensor, l_h: torch.Tensor, w: torch.Tensor, lam: float):  # type: ignore[no-untyped-def]
    human = torch.where(w != 0, l_h * w, 0.0).mean()
    machine = (lam * (1.0 - w) * l_m).mean()
    return human, machine


@pytest.mark.parametrize("rule", ["normalization", "exponential", "threshold"])
def test_nonneg_act_loss_is_the_act_loss_wherever_the_machine_part_is_non_negative(
    rule: str,
) -> None:
    l_m, l_h, eps = _fixed_losses(3)
    pi = _pi(rule, eps, 0.0 if rule == "threshold" else 0.01)
    g = torch.Generator().manual_seed(5)
    agreed = clipped = 0
    for _ in range(300):
        delta = torch.rand(N, generator=g, dtype=torch.float64) < pi
        w = importance_weights(delta, pi)
        _, machine_part = _split_parts(l_m, l_h, w, 0.8)
        got = act_loss_nonneg(l_m, l_h, w, 0.8).item()
        if machine_part >= 0:
            assert got == pytest.approx(act_loss(l_m, l_h, delta, pi, 0.8).item(), rel=1e-12)
            agreed += 1
        else:
            assert got == pytest.approx(-machine_part.item(), rel=1e-12)
            clipped += 1
    assert agreed > 0
    if rule == "threshold":  # pi in {0, 1}: w in {0, 1}, the machine part is never negative
        assert clipped == 0


def test_nonneg_act_loss_is_bounded_below_where_the_act_loss_is_not() -> None:
    """Reviewed items drawn with a tiny pi (the exponential rule with a small floor)
    carry weight 1/pi on l_h and 1 - 1/pi < 0 on l_m: a model that moves away from
    their machine labels drives eq. 8 to -infinity; the nnPU form stays >= -beta."""
    n = 50
    machine = torch.zeros(n, dtype=torch.int64)
    human = machine.clone()
    human[:5] = 1  # five reviewed items, machine label wrong, drawn with pi = 0.02
    delta = torch.zeros(n, dtype=torch.bool)
    delta[:5] = True
    pi = torch.where(delta, 0.02, 0.5).to(torch.float64)
    w = importance_weights(delta, pi)
    act_values, nn_values = [], []
    for t in (1.0, 5.0, 20.0, 100.0):
        logits = torch.zeros(n, 3, dtype=torch.float64)
        logits[:5] = torch.tensor([-t, t, 0.0], dtype=torch.float64)  # away from y_m
        logits[5:, 0] = t
        l_m, l_h = per_example_losses(logits, machine, human)
        act_values.append(act_loss(l_m, l_h, delta, pi, 1.0).item())
        nn_values.append(act_loss_nonneg(l_m, l_h, w, 1.0, beta=0.05).item())
    assert act_values == sorted(act_values, reverse=True) and act_values[-1] < -500
    assert min(nn_values) >= -0.05


def test_nonneg_step_pushes_a_negative_machine_part_back_up() -> None:
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(40, 3, generator=g, dtype=torch.float64, requires_grad=True)
    machine = torch.randint(0, 3, (40,), generator=g)
    human = machine.clone()
    w = torch.zeros(40, dtype=torch.float64)
    w[:10] = 20.0  # four reviewed items with pi = 0.05 dominate: R_m < 0
    l_m, l_h = per_example_losses(logits, machine, human)
    _, before = _split_parts(l_m, l_h, w, 1.0)
    assert before.item() < 0
    loss = act_loss_nonneg(l_m, l_h, w, 1.0)
    loss.backward()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        stepped = logits - 0.1 * logits.grad
    l_m2, l_h2 = per_example_losses(stepped, machine, human)
    _, after = _split_parts(l_m2, l_h2, w, 1.0)
    assert after.item() > before.item()
    with pytest.raises(ValueError):
        act_loss_nonneg(l_m, l_h, w, 1.0, beta=-1.0)
