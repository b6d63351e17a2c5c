"""What a Table-3 run computes: its rows (:class:`Method`) and its settings (:class:`TableConfig`).

The rows are the paper's Table 3 (Lin et al., "ACT as Human", section 5.2)
plus an optional "reviewed items only" row; see :mod:`services.experiments.table`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from services.core.sampling import AlphaMethod
from services.trainer.hpo import PAPER_LAMBDA_GRID
from services.trainer.loss import LossKind
from services.trainer.sampling import Rule, SamplingParams

#: Receives one human-readable line per step of a run (None: silent).
Progress = Callable[[str], None]
#: Where hyper-parameters are searched: on seed 0 only (then reused), or on every seed.
SearchScope = Literal["first_seed", "every_seed"]


@dataclass(frozen=True, slots=True)
class Method:
    """A row of Table 3: which labels, which loss, which sampling rule."""

    key: str
    label: str
    kind: LossKind
    rule: Rule | None = None  # sampling rule of the ACT data (None: no sampling)
    review_all: bool = False  # human-only reference: every item human-labelled

    @property
    def is_act_loss(self) -> bool:
        """True for the ACT-loss rows (lambda is searched)."""
        return self.kind is LossKind.ACT


HUMAN_ONLY = Method(
    "human_only", "Human only - Cross-entropy loss", LossKind.HUMAN_ONLY, review_all=True
)
MACHINE_ONLY = Method("machine_only", "Machine only - Cross-entropy loss", LossKind.MACHINE_ONLY)
ACT_DATA_CE = Method(
    "act_data_ce", "ACT data - Cross-entropy loss", LossKind.ACT_DATA_CE, Rule.THRESHOLD
)
ACT_NORM = Method("act_norm", "ACT data - ACT norm. loss", LossKind.ACT, Rule.NORMALIZATION)
ACT_EXP = Method("act_exp", "ACT data - ACT exp. loss", LossKind.ACT, Rule.EXPONENTIAL)
ACT_THRE = Method("act_thre", "ACT data - ACT thre. loss", LossKind.ACT, Rule.THRESHOLD)
REVIEWED_ONLY = Method(
    "reviewed_only", "Reviewed items only - Cross-entropy loss", LossKind.HUMAN_ONLY, Rule.THRESHOLD
)

#: The rows of the paper's Table 3, in its order.
TABLE3_METHODS: tuple[Method, ...] = (
    HUMAN_ONLY,
    MACHINE_ONLY,
    ACT_DATA_CE,
    ACT_NORM,
    ACT_EXP,
    ACT_THRE,
)
METHODS_BY_KEY: dict[str, Method] = {m.key: m for m in (*TABLE3_METHODS, REVIEWED_ONLY)}


@dataclass(frozen=True)
class TableConfig:
    """How a table is computed (defaults: the paper's protocol, scaled to a CPU)."""

    model: str | None = None  # downstream model; None = the data set's default
    model_params: dict[str, str] = field(default_factory=dict)
    epochs: int | None = None  # None = the model's default
    batch_size: int | None = None
    #: Learning rates searched; None = only the model's default (no lr search).
    learning_rates: tuple[float, ...] | None = None
    #: lambda grid of the ACT losses (appendix A.3); a single value = no search.
    lambdas: tuple[float, ...] = PAPER_LAMBDA_GRID
    #: Search on the first seed and reuse its choice (cheap), or on every seed.
    search: SearchScope = "first_seed"
    #: Exponential-weighting steepness; appendix A.3 "tries beta = 10 or 100", so with
    #: more than one value beta is selected on the validation set like lambda.
    betas: tuple[float, ...] = (10.0, 100.0)
    alpha_method: AlphaMethod = "quantile"  # appendix A.3: quantile
    pi_min: float = 0.0
    #: Rules whose draws are trimmed to ``sum delta <= B`` like the sampler service does.
    #: Default: exponential and thresholding (the paper sets their parameters "such that
    #: sum delta <= B"), not normalization, which the paper takes from active
    #: M-estimation (refs. 17, 20): independent draws, ``E[sum delta] = B``.
    trim_rules: tuple[Rule, ...] = (Rule.EXPONENTIAL, Rule.THRESHOLD)
    include_reviewed_only: bool = True
    #: Budgets (fractions) of the accuracy-vs-budget curve; empty = no curve.
    curve_budgets: tuple[float, ...] = ()
    curve_methods: tuple[str, ...] = ("act_thre", "act_exp", "act_norm", "act_data_ce")
    curve_seeds: int = 1
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None = torch's default (1 in workers)
    #: Processes training in parallel (1 = in this process).
    workers: int = 1

    def sampling(self, rule: Rule, budget: float, seed: int, beta: float) -> SamplingParams:
        """The sampler's parameters of one ACT-data draw: batch mode, this table's
        alpha method and floor, one budget, seed and beta of the grid."""
        return SamplingParams(
            rule=rule, budget_fraction=budget, mode="batch", beta=beta,
            alpha_method=self.alpha_method, pi_min=self.pi_min, seed=seed,
        )  # fmt: skip
