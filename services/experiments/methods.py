"""What a Table-3 run computes: its rows (:class:`Method`) and its settings (:class:`TableConfig`).

The rows are the paper's Table 3 (Lin et al., "ACT as Human", section 5.2)
plus an optional "reviewed items only" row, the baselines a user compares a
budget against (:data:`BASELINE_METHODS`) and methods beyond the paper
(:data:`NEW_METHODS`); see :mod:`services.experiments.table`.
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
#: Where a row's eps comes from: the critic; a uniformly random ranking (a random
#: subset under thresholding); the same eps for every item (pi = B/N under
#: normalization); or the truth (eps high exactly where the machine label is wrong).
CriticSource = Literal["critic", "random", "blind", "oracle"]
#: The feedback loop's second critic: a model of the reviewed items' human labels,
#: or models cross-fitted on all labels known so far (machine where unreviewed).
SecondCritic = Literal["reviewed", "act_data"]
#: Cleaning unreviewed rows before training: dropping those confident learning
#: flags, keeping only those whose machine label a model of the human labels
#: agrees with, or relabelling the confidently contradicted ones (progressive
#: label correction).
Cleaning = Literal["confident", "agree", "plc"]
#: Pseudo-labelling baselines (:mod:`services.experiments.pseudo`): human labels
#: on a random subset, or spent by uncertainty in rounds.
PseudoKind = Literal["random", "active"]
#: How reviews are drawn: the row's sampling rule on eps, or CDI's burn-in and
#: learned error model (:mod:`services.core.cdi`).
Design = Literal["rule", "cdi"]


@dataclass(frozen=True, slots=True)
class Method:
    """A row of Table 3: which labels, which loss, which sampling rule."""

    key: str
    label: str
    kind: LossKind
    rule: Rule | None = None  # sampling rule of the ACT data (None: no sampling)
    review_all: bool = False  # human-only reference: every item human-labelled
    critic: CriticSource = "critic"
    #: Review rounds: 1 spends the budget on the critic's eps at once; 2 or more
    #: spend it in rounds, each ranked by eps fused with a cross-fitted
    #: downstream model trained on the data of the rounds before
    #: (:mod:`services.experiments.feedback`).
    rounds: int = 1
    second_critic: SecondCritic = "reviewed"
    #: Drop unreviewed rows before training (:mod:`services.core.cleaning`):
    #: those a cross-fitted model flags (confident learning), or those whose
    #: machine label a model of the reviewed items' human labels disagrees with.
    clean: Cleaning | None = None
    #: Weight each unreviewed row's machine-label loss by the probability that the
    #: label is right, ``1 - eps`` (importance reweighting, Liu and Tao 2016;
    #: :func:`services.trainer.loss.trusted_lambda`); with the feedback loop the
    #: eps is the last round's fused score.
    trust: bool = False
    #: A pseudo-labelling baseline: the LLM's labels unused, the budget's human
    #: labels plus a model's confident predictions (paper, Table 7).
    pseudo: PseudoKind | None = None
    design: Design = "rule"
    #: A candidate for the recommended method (``_best``): a method a user can run.
    #: References (human-only, oracle critic) and baselines are not.
    candidate: bool = False

    @property
    def is_act_loss(self) -> bool:
        """True for the ACT-loss rows (lambda is searched)."""
        return self.kind in (LossKind.ACT, LossKind.ACT_NONNEG)


HUMAN_ONLY = Method(
    "human_only", "Human only - Cross-entropy loss", LossKind.HUMAN_ONLY, review_all=True
)
MACHINE_ONLY = Method("machine_only", "Machine only - Cross-entropy loss", LossKind.MACHINE_ONLY)
ACT_DATA_CE = Method(
    "act_data_ce", "ACT data - Cross-entropy loss", LossKind.ACT_DATA_CE, Rule.THRESHOLD
)
ACT_NORM = Method(
    "act_norm", "ACT data - ACT norm. loss", LossKind.ACT, Rule.NORMALIZATION, candidate=True
)
ACT_EXP = Method(
    "act_exp", "ACT data - ACT exp. loss", LossKind.ACT, Rule.EXPONENTIAL, candidate=True
)
ACT_THRE = Method(
    "act_thre", "ACT data - ACT thre. loss", LossKind.ACT, Rule.THRESHOLD, candidate=True
)
REVIEWED_ONLY = Method(
    "reviewed_only", "Reviewed items only - Cross-entropy loss", LossKind.HUMAN_ONLY, Rule.THRESHOLD
)
RANDOM_SUBSET = Method(
    "random_subset",
    "Random subset of B items, human labels - Cross-entropy loss",
    LossKind.HUMAN_ONLY,
    Rule.THRESHOLD,
    critic="random",
)
RANDOM_CRITIC = Method(
    "act_random_critic",
    "ACT loss, random critic (pi = B/N)",
    LossKind.ACT,
    Rule.NORMALIZATION,
    critic="blind",
)
ORACLE_CRITIC = Method(
    "act_oracle_critic",
    "ACT thre. loss, oracle critic (upper bound)",
    LossKind.ACT,
    Rule.THRESHOLD,
    critic="oracle",
)
PSEUDO_LABELS = Method(
    "pseudo_labels",
    "Pseudo-labelling (random B human labels + confident predictions) - Cross-entropy loss",
    LossKind.ACT_DATA_CE,
    Rule.THRESHOLD,
    pseudo="random",
)
ACTIVE_PSEUDO_LABELS = Method(
    "active_pseudo_labels",
    "Active pseudo-labelling (B human labels by uncertainty + confident predictions) - CE loss",
    LossKind.ACT_DATA_CE,
    Rule.THRESHOLD,
    pseudo="active",
)
ACT_THRE_FEEDBACK = Method(
    "act_thre_feedback",
    "ACT thre. loss, feedback loop (3 rounds, a model of the reviews as second critic)",
    LossKind.ACT,
    Rule.THRESHOLD,
    rounds=3,
    candidate=True,
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
CL_MACHINE_ONLY = Method(
    "cl_machine_only",
    "Machine labels, confident-learning filtered - Cross-entropy loss",
    LossKind.MACHINE_ONLY,
    clean="confident",
)
CL_ACT_THRE = Method(
    "cl_act_thre",
    "ACT data, confident-learning filtered - ACT thre. loss",
    LossKind.ACT,
    Rule.THRESHOLD,
    clean="confident",
    candidate=True,
)
ACT_THRE_AGREE = Method(
    "act_thre_agree",
    "ACT data, machine labels kept where a model of the reviews agrees - ACT thre. loss",
    LossKind.ACT,
    Rule.THRESHOLD,
    clean="agree",
    candidate=True,
)
ACT_THRE_FEEDBACK_AGREE = Method(
    "act_thre_feedback_agree",
    "Feedback loop (3 rounds) + agreement filter - ACT thre. loss",
    LossKind.ACT,
    Rule.THRESHOLD,
    rounds=3,
    clean="agree",
    candidate=True,
)
ACT_THRE_TRUST = Method(
    "act_thre_trust",
    "ACT data - ACT thre. loss, machine labels weighted by 1 - eps (importance reweighting)",
    LossKind.ACT,
    Rule.THRESHOLD,
    trust=True,
    candidate=True,
)
ACT_THRE_FEEDBACK_TRUST = Method(
    "act_thre_feedback_trust",
    "Feedback loop (3 rounds), machine labels weighted by 1 - fused eps - ACT thre. loss",
    LossKind.ACT,
    Rule.THRESHOLD,
    rounds=3,
    trust=True,
    candidate=True,
)
ACT_THRE_PLC = Method(
    "act_thre_plc",
    "ACT data, machine labels progressively corrected (PLC, cross-fitted) - ACT thre. loss",
    LossKind.ACT,
    Rule.THRESHOLD,
    clean="plc",
    candidate=True,
)
ACT_EXP_NONNEG = Method(
    "act_exp_nonneg",
    "ACT data - ACT exp. loss, non-negative machine part (nnPU)",
    LossKind.ACT_NONNEG,
    Rule.EXPONENTIAL,
    candidate=True,
)

ACT_CDI = Method(
    "act_cdi",
    "CDI (burn-in error model, confidence-driven reviews) - ACT (PPI++) loss",
    LossKind.ACT,
    Rule.NORMALIZATION,
    design="cdi",
)

#: What a user would otherwise do with the same budget, and the critic's bounds.
BASELINE_METHODS: tuple[Method, ...] = (
    REVIEWED_ONLY,
    RANDOM_SUBSET,
    RANDOM_CRITIC,
    ORACLE_CRITIC,
    CL_MACHINE_ONLY,
    PSEUDO_LABELS,
    ACTIVE_PSEUDO_LABELS,
    ACT_CDI,
)
#: Beyond the paper (issue: "beat the paper").
NEW_METHODS: tuple[Method, ...] = (
    ACT_THRE_FEEDBACK,
    ACT_THRE_AGREE,
    ACT_THRE_FEEDBACK_AGREE,
    CL_ACT_THRE,
    ACT_EXP_NONNEG,
    ACT_THRE_TRUST,
    ACT_THRE_FEEDBACK_TRUST,
    ACT_THRE_PLC,
)
METHODS_BY_KEY: dict[str, Method] = {
    m.key: m for m in (*TABLE3_METHODS, *BASELINE_METHODS, *NEW_METHODS)
}


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
    #: Rows beyond Table 3 and reviewed-only (keys of :data:`METHODS_BY_KEY`).
    extra_methods: tuple[str, ...] = ()
    #: Exactly these rows, in this order, instead of Table 3 + reviewed-only +
    #: ``extra_methods`` (a focused run); None: those.
    rows: tuple[str, ...] | None = None
    #: A second budget, the table's plus this many points (the paper's "ideal budget
    #: + 10 points" buffer, appendix F.2), for ``plus_methods`` on every seed; None: off.
    plus_budget: float | None = None
    plus_methods: tuple[str, ...] = ("act_thre", "act_exp", "reviewed_only")
    #: Folds of the feedback loop's cross-fitting (no item is scored by a model
    #: that saw its own label).
    feedback_folds: int = 2
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
