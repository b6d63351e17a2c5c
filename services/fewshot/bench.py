"""Benchmark of the few-shot local pair against the random and oracle critics.

For each data set the pair is fit on its seed, labels a held-out evaluation
sample, criticises its own labels, and is scored against the human labels:

- ``fewshot_annotator_accuracy_<ds>``: the annotator's accuracy;
- ``fewshot_critic_abs_<ds>``: ABS (eq. 5) of the few-shot critic;
- ``random_critic_abs_<ds>``: ABS of a random critic (mean over 10 seeds; 1/2
  in expectation);
- ``oracle_critic_abs_<ds>``: ABS of the oracle critic (the upper bound).

Data: ``fashion`` seeds from the training split (60 images per class) and
evaluates on a sample of the test split; ``spam`` seeds from the corpus (32
emails per class) and evaluates on other emails. Measured on this project's
2-core machine (seed 0, default seed sizes, ``python -m services.fewshot.bench``):

========  ======  =========  ==========  ==========  ==========  ===========================
data set  n_eval  annotator  critic ABS  random ABS  oracle ABS  wall time
========  ======  =========  ==========  ==========  ==========  ===========================
fashion   2000    77.4%      0.787       0.498       0.887       9 s
spam      1000    88.2%      0.874       0.495       0.941       7 s warm cache, see below
========  ======  =========  ==========  ==========  ==========  ===========================

The spam run embeds the seed and evaluation emails with MiniLM on the CPU
unless they are in the embedding cache (``.local/cache/embeddings.sqlite``,
``$ACT_CACHE_DIR``): a cold run with n_eval=1000 took 130 s on the shared
machine (load average ~5; about 8 emails per second), a warm one 7 s.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from act.v1 import common_pb2, task_pb2

from services.core.baselines import oracle_critic_eps, random_critic_eps
from services.core.metrics import abs_score, accuracy
from services.fewshot.pair import FewShotPair, build_pair
from services.fewshot.pools import LabelledPool, builtin_pool
from services.fewshot.seed import hash_order

#: Short bench names -> (seed pool, evaluation pool) data set names.
BENCH_DATASETS: dict[str, tuple[str, str]] = {
    "fashion": ("fashion-mnist", "fashion-mnist-test"),
    "spam": ("spam-assassin", "spam-assassin"),
}
RANDOM_CRITIC_SEEDS = 10


def _task(pool: LabelledPool) -> task_pb2.Task:
    return task_pb2.Task(
        task_id=f"bench-{pool.name}",
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(pool.label_names)],
        modality=common_pb2.MODALITY_TEXT if pool.modality == "text" else common_pb2.MODALITY_IMAGE,
    )


def evaluation_sample(
    pair: FewShotPair, pool: LabelledPool, n_eval: int, seed: int = 0
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``n_eval`` pool positions in a fixed pseudo-random order, none of them in the seed."""
    seed_ids = set(pair.selection.ids)
    order = [int(i) for i in hash_order(pool.ids, seed + 1) if pool.ids[int(i)] not in seed_ids]
    return np.array(order[:n_eval], dtype=np.int64)


def evaluate_pair(
    pair: FewShotPair, pool: LabelledPool, indices: np.ndarray[Any, np.dtype[np.int64]]
) -> dict[str, Any]:
    """Run the pair on pool items (through its backends' batch API) and score it."""
    task = _task(pool)
    items = pool.items(indices, task.task_id)
    human = pool.labels[indices]
    machine = np.array([r.label_index for r in pair.annotator.annotate_many(task, items)])
    eps = pair.critic.eps_many(items, machine.tolist())
    randoms = [
        abs_score(machine, human, random_critic_eps(len(items), s))
        for s in range(RANDOM_CRITIC_SEEDS)
    ]
    return {
        "accuracy": accuracy(machine, human),
        "critic_abs": abs_score(machine, human, eps),
        "random_abs": float(np.mean(randoms)),
        "oracle_abs": abs_score(machine, human, oracle_critic_eps(machine, human)),
        "machine": machine,
        "human": human,
        "eps": eps,
    }


def bench_fewshot(dataset: str, n_eval: int) -> dict[str, float]:
    """The four metrics of one data set (``fashion`` or ``spam``) on ``n_eval`` items."""
    if dataset not in BENCH_DATASETS:
        raise ValueError(
            f"unknown bench data set {dataset!r}; expected one of {list(BENCH_DATASETS)}"
        )
    seed_name, eval_name = BENCH_DATASETS[dataset]
    seed_pool = builtin_pool(seed_name)
    eval_pool = seed_pool if eval_name == seed_name else builtin_pool(eval_name)
    pair = build_pair(seed_pool)
    result = evaluate_pair(pair, eval_pool, evaluation_sample(pair, eval_pool, n_eval))
    return {
        f"fewshot_annotator_accuracy_{dataset}": float(result["accuracy"]),
        f"fewshot_critic_abs_{dataset}": float(result["critic_abs"]),
        f"random_critic_abs_{dataset}": float(result["random_abs"]),
        f"oracle_critic_abs_{dataset}": float(result["oracle_abs"]),
    }


def main() -> None:  # pragma: no cover - manual runs: python -m services.fewshot.bench
    """Print the metrics of both data sets as JSON lines, with wall times."""
    import json
    import sys

    sizes = {"fashion": 2000, "spam": 1000}
    for name in sys.argv[1:] or list(BENCH_DATASETS):
        start = time.perf_counter()
        metrics = bench_fewshot(name, sizes.get(name, 1000))
        metrics[f"fewshot_bench_seconds_{name}"] = time.perf_counter() - start
        for key, value in metrics.items():
            print(json.dumps({"metric": key, "value": round(value, 4)}), flush=True)


if __name__ == "__main__":  # pragma: no cover
    main()
