"""A seeded synthetic StudyData with known answers (no model involved)."""

from __future__ import annotations

import numpy as np

from services.study.metrics import StudyData, Usage
from services.study.plan import CRITIC_STRATEGIES
from services.study.records import PhaseRecord

PROFILES = ("weak", "mid", "strong")


def synthetic(n: int = 120, seed: int = 0) -> StudyData:
    """``strong`` labels 95% right, ``mid`` 75%, ``weak`` 50%, each with both prompts.

    On ``strong``'s cot labels: critic ``mid`` with white-box ``naive-logit`` is
    an oracle (eps = 1 on errors), every other cell is a random critic, so
    ABS(naive-logit by mid) is near its maximum and the rest near 0.5.
    """
    rng = np.random.default_rng(seed)
    human = rng.integers(0, 2, size=n).astype(np.int64)

    def labels(acc: float) -> np.ndarray:
        wrong = rng.random(n) > acc
        return np.where(wrong, 1 - human, human).astype(np.int64)

    accs = {"weak": 0.5, "mid": 0.75, "strong": 0.95}
    lab = {(m, a): labels(accs[m]) for m in PROFILES for a in ("naive", "cot")}
    base = lab[("strong", "cot")]
    eps = {}
    for critic in PROFILES:
        for s in CRITIC_STRATEGIES:
            if critic == "mid" and s == "naive-logit":
                e = (base != human).astype(np.float64)
            else:
                e = rng.random(n)
            eps[("strong", critic, s)] = e
    usage = tuple(
        Usage("critique", m, s, n, 0, 300.0, 20.0) for m in PROFILES for s in CRITIC_STRATEGIES
    )
    phases = tuple(
        PhaseRecord("critique", m, s, n, n / 2.0, prompt_tokens=300 * n)
        for m in PROFILES
        for s in CRITIC_STRATEGIES
    )
    return StudyData(
        profiles=PROFILES,
        annotation_strategies=("naive", "cot"),
        critic_strategies=tuple(CRITIC_STRATEGIES),
        base_model="strong",
        base_annotation="cot",
        item_ids=tuple(f"i{k}" for k in range(n)),
        human=human,
        labels=lab,
        eps=eps,
        usage=usage,
        phases=phases,
    )
