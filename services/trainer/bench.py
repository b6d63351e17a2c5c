"""Benchmark of the ACT loss's cost: ``trainer_act_loss_overhead``.

The ACT loss (paper eq. 8 with power tuning) needs the per-example losses
against both the machine and the human label. In training it is computed as
one fused cross-entropy with per-example target weights
(:func:`services.trainer.loss.act_loss_fused`), so an epoch with the ACT loss
should cost what an epoch of plain cross-entropy costs: the model's forward
and backward passes dominate. Target: <= 1.05.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from services.trainer.data import ActDataset
from services.trainer.fit import TrainConfig, epoch_permutation, make_optimizer
from services.trainer.loss import LossKind, Objective
from services.trainer.networks import build_network


def _dataset(n: int, seed: int) -> ActDataset:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8))
    machine = rng.integers(0, 10, n)
    human = np.where(rng.random(n) < 0.3, rng.integers(0, 10, n), machine)
    delta = rng.random(n) < 0.2
    pi = np.where(delta, rng.uniform(0.2, 1.0, n), rng.uniform(0.0, 0.2, n))
    return ActDataset.from_arrays(images, machine, human, delta, pi, 10)


def bench_act_loss_overhead(n: int = 4000, epochs: int = 3, seed: int = 0) -> float:
    """Epoch time with the ACT loss over epoch time with plain cross-entropy.

    Same data (Fashion-MNIST-shaped: 28x28 images, 10 classes, a fifth of the
    items reviewed with pi in (0, 1], so every term of the ACT loss is
    exercised), same model (the small CNN, same initial weights), same batches.
    The two fits run in lockstep on one thread and every optimisation step is
    timed on its own, the order of the two alternating per batch: whatever else
    the machine is doing hits both alike. The result is the ratio of the summed
    step times (the epoch times without data loading, which is identical).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _lockstep(_dataset(n, seed), epochs, seed)
    finally:
        torch.set_num_threads(threads)


def _lockstep(data: ActDataset, epochs: int, seed: int) -> float:
    config = TrainConfig(learning_rate=1e-3, epochs=epochs, batch_size=128, seed=seed)
    objectives = (Objective(LossKind.ACT_DATA_CE), Objective(LossKind.ACT, power_lambda=0.8))
    models = []
    for _ in objectives:
        torch.manual_seed(seed)
        models.append(build_network("cnn-28x28", data.num_classes))
    optimizers = [make_optimizer(m, config) for m in models]
    inputs = data.inputs
    assert isinstance(inputs, torch.Tensor)
    machine, filled, weight, delta = data.machine, data.human_filled, data.weight, data.delta
    totals = [0.0, 0.0]
    step = 0
    for epoch in range(1, epochs + 1):
        order = epoch_permutation(len(data), seed, epoch)
        for start in range(0, len(data), config.batch_size):
            idx = order[start : start + config.batch_size]
            batch = (inputs[idx], machine[idx], filled[idx], weight[idx], delta[idx])
            which = (0, 1) if step % 2 == 0 else (1, 0)
            for k in which:
                began = time.perf_counter()
                logits = models[k](batch[0])
                loss = objectives[k].batch_loss(logits, *batch[1:])
                optimizers[k].zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizers[k].step()
                totals[k] += time.perf_counter() - began
            step += 1
    return totals[1] / totals[0]


if __name__ == "__main__":
    print(f"trainer_act_loss_overhead {bench_act_loss_overhead():.4f}")
