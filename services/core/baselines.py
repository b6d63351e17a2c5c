"""Reference critics that bound a real criticizer's ABS from below and above.

- The random critic scores every item with an independent uniform eps: its
  review order is a random permutation, so its expected ABS is exactly 1/2
  (:func:`services.core.metrics.random_abs_moments`). A useful critic
  must beat it.
- The oracle critic knows the human labels: eps = 1 for machine errors and 0
  otherwise, i.e. the Kronecker-delta solution of the paper's eq. 2. No critic
  can have a larger ABS (:func:`services.core.metrics.oracle_abs`).
"""

from __future__ import annotations

import numpy as np

from services.core.metrics import FloatArray, Labels, _pair


def random_critic_eps(n_items: int, seed: int) -> FloatArray:
    """Uniform eps in [0, 1) per item, reproducible from ``seed``."""
    if n_items < 0:
        raise ValueError("n_items must be >= 0")
    return np.asarray(np.random.default_rng(seed).random(n_items), dtype=np.float64)


def oracle_critic_eps(machine: Labels, human: Labels) -> FloatArray:
    """eps_i = 1 when the machine label is wrong, else 0 (uses the human labels)."""
    m, h = _pair(machine, human)
    return np.asarray(m != h, dtype=np.float64)
