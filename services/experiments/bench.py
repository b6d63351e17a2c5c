"""Benchmarks of the downstream experiments: the paper's Table 3 gaps, small and fast.

:func:`bench_tables` runs the ``bench`` preset (:mod:`services.experiments.presets`)
for Fashion-MNIST and SpamAssassin: 5 seeds on a subset of the training data,
lambda searched on the first seed. Gaps are human-only minus the method in
accuracy points (means over the seeds); budgets and annotator accuracies are
percentages. The full-size tables are ``python -m services.experiments
--preset report``.
"""

from __future__ import annotations

import os
import sys

from services.experiments.presets import preset
from services.experiments.table import table_result

#: The metrics ``make bench`` reports per data set (prefix ``fashion_`` / ``spam_``).
BENCH_KEYS = (
    "gap_human_act_thre",
    "gap_human_act_exp",
    "gap_human_act_norm",
    "gap_human_machine",
    "gap_human_reviewed_only",
    "gap_human_random_subset",
    "gap_human_act_random_critic",
    "gap_human_act_oracle_critic",
    "gap_human_cl_machine_only",
    "gap_human_act_thre_feedback",
    "gap_human_act_thre_agree",
    "gap_human_act_thre_feedback_agree",
    "gap_human_cl_act_thre",
    "gap_human_act_exp_nonneg",
    "gap_human_act_thre_trust",
    "gap_human_act_thre_feedback_trust",
    "gap_human_pseudo_labels",
    "gap_human_active_pseudo_labels",
    "gap_human_act_cdi",
    # The row chosen on validation accuracy among those a user can run.
    "gap_human_act_best",
    "budget",
    "annotator_accuracy",
)


def bench_table(dataset: str, *, verbose: bool = False) -> dict[str, float]:
    """One data set's bench metrics (plus ``<dataset>_table_seconds``)."""
    settings = preset("bench", dataset)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    summary = table_result(
        dataset,
        seeds=settings.seeds,
        n_train=settings.n_train,
        config=settings.config,
        n_test=settings.n_test,
        progress=progress if verbose else None,
    ).summary()
    out = {f"{dataset}_{key}": summary[f"{dataset}_{key}"] for key in BENCH_KEYS}
    out[f"{dataset}_table_seconds"] = summary[f"{dataset}_seconds"]
    return out


def bench_tables(datasets: tuple[str, ...] = ("fashion", "spam")) -> dict[str, float]:
    """``fashion_gap_human_act_thre`` ... ``spam_annotator_accuracy`` (see :data:`BENCH_KEYS`).

    Set ``ACT_BENCH_VERBOSE=1`` to print per-run progress on stderr.
    """
    verbose = os.environ.get("ACT_BENCH_VERBOSE", "") not in ("", "0")
    results: dict[str, float] = {}
    for dataset in datasets:
        results.update(bench_table(dataset, verbose=verbose))
    return results


if __name__ == "__main__":
    for name, value in bench_tables().items():
        print(f"{name} {value:.4f}")
