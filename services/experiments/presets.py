"""Named experiment settings: ``bench`` (fast, for ``make bench``) and ``report`` (full size).

The paper trains ResNet18/RoBERTa on H100s with a learning-rate x lambda
grid per method (appendix A.3). On a 2-core CPU a Fashion-MNIST CNN epoch
over 60,000 images takes tens of seconds, so:

* ``bench`` trains on a subset with the model's default learning rate and
  searches lambda on the first seed only (then reuses it); it must finish in
  about four minutes per data set.
* ``report`` trains on the full training split (Fashion-MNIST: 57,500 images,
  2,000 kept for the few-shot seed and 500 for validation), searches the
  learning rate (two values instead of the paper's four, for time), lambda
  (the paper's five) and beta (10, 100) on the first seed, and adds the
  accuracy-vs-budget curve. Measured on the 2-core machine: about 45 minutes
  for Fashion-MNIST (a 57.5k-image fit of 8 epochs takes ~55 s per worker, two
  workers), a few minutes for SpamAssassin.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.experiments.methods import TableConfig

#: Rows beyond Table 3 and reviewed-only in every preset: the baselines a budget
#: must beat, the critic's bounds and the feedback loop.
EXTRA_ROWS = (
    "random_subset",
    "act_random_critic",
    "act_oracle_critic",
    "cl_machine_only",
    "act_thre_feedback",
    "act_thre_agree",
    "act_thre_feedback_agree",
    "cl_act_thre",
    "act_exp_nonneg",
    "act_thre_trust",
    "act_thre_feedback_trust",
    "pseudo_labels",
    "active_pseudo_labels",
    "act_cdi",
    "act_thre_plc",
)
#: Rows too slow for the bench's four minutes per data set: progressive label
#: correction trains two cross-fitted models (ten fits) per seed.
REPORT_ONLY_ROWS = ("act_thre_plc",)
BENCH_ROWS = tuple(r for r in EXTRA_ROWS if r not in REPORT_ONLY_ROWS)


@dataclass(frozen=True)
class Preset:
    """Sizes and training settings of one named configuration for one data set."""

    seeds: int
    n_train: int | None
    n_test: int | None
    config: TableConfig


PRESETS: dict[str, dict[str, Preset]] = {
    "bench": {
        "fashion": Preset(
            seeds=5,
            n_train=6000,
            n_test=5000,
            config=TableConfig(
                epochs=4, lambdas=(0.6, 0.8, 1.0), workers=2, extra_methods=BENCH_ROWS
            ),
        ),
        "spam": Preset(
            seeds=5,
            n_train=None,
            n_test=None,
            config=TableConfig(lambdas=(0.6, 0.8, 1.0), extra_methods=BENCH_ROWS),
        ),
    },
    "report": {
        "fashion": Preset(
            seeds=5,
            n_train=None,
            n_test=None,
            config=TableConfig(
                learning_rates=(2e-3, 5e-4),
                curve_budgets=(0.05, 0.1, 0.3),
                curve_methods=("act_thre", "act_exp", "act_thre_feedback_agree", "reviewed_only"),
                workers=2,
                extra_methods=EXTRA_ROWS,
                plus_budget=0.10,
                plus_methods=("act_thre", "act_exp", "act_thre_feedback_agree", "reviewed_only"),
            ),
        ),
        "spam": Preset(
            seeds=5,
            n_train=None,
            n_test=None,
            config=TableConfig(
                learning_rates=(1e-2, 3e-3, 1e-3, 3e-4),
                curve_budgets=(0.02, 0.05, 0.2, 0.4),
                curve_seeds=3,
                curve_methods=("act_thre", "act_exp", "act_thre_feedback_agree", "reviewed_only"),
                extra_methods=EXTRA_ROWS,
                plus_budget=0.10,
                plus_methods=("act_thre", "act_exp", "act_thre_feedback_agree", "reviewed_only"),
            ),
        ),
    },
}


def preset(name: str, dataset: str) -> Preset:
    """The preset ``name`` for ``dataset`` (KeyError naming the known ones)."""
    try:
        return PRESETS[name][dataset]
    except KeyError:
        raise KeyError(f"no preset {name!r} for {dataset!r}; presets: {sorted(PRESETS)}") from None
