"""The sampling parameters of one task: one value shared by sampler, trainer and experiments.

:class:`SamplingParams` is what ``Task.budget`` and ``Task.sampling``
(``act.v1.Budget`` and ``act.v1.SamplingConfig``) carry once resolved: the
rule pi_B(eps), batch or streaming mode, the budget (fraction, hard cap,
pacing window), beta / alpha / tau, the exploration floor and the seed of
the draws. The sampler resolves it from a task over its settings
(:meth:`SamplingParams.from_task`), the trainer's offline draws and the
experiments take it as it is. Engine knobs that are no task's business (the
streaming sketch's bins and half-life, the pacing tolerance, a partition's
share of the hard cap) are added where the streaming engine is built
(:class:`services.core.streaming.StreamingParams`).

Pure: dataclasses and the generated protobuf contracts, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from act.v1 import common_pb2, task_pb2

from services.core.sampling import DEFAULT_BETA, AlphaMethod, Rule, check_sampling_values

__all__ = ["RULES", "RULES_BACK", "Mode", "SamplingParams"]

Mode = Literal["batch", "streaming"]

#: Rule <-> the ``act.v1.SamplingRule`` enum.
RULES = {
    Rule.NORMALIZATION: common_pb2.SAMPLING_RULE_NORMALIZATION,
    Rule.EXPONENTIAL: common_pb2.SAMPLING_RULE_EXPONENTIAL,
    Rule.THRESHOLD: common_pb2.SAMPLING_RULE_THRESHOLD,
}
RULES_BACK = {v: k for k, v in RULES.items()}
_MODES_BACK: dict[int, Mode] = {
    common_pb2.SAMPLING_MODE_BATCH: "batch",
    common_pb2.SAMPLING_MODE_STREAMING: "streaming",
}


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """The sampling parameters of one task, resolved (see module docstring)."""

    rule: Rule
    #: Budget b: B = floor(b * N) reviews (Budget.fraction).
    budget_fraction: float
    mode: Mode = "streaming"
    #: Exponential weighting steepness (SamplingConfig.beta).
    beta: float = DEFAULT_BETA
    #: How alpha is derived when the task fixes none: 'solve' (sum pi = B) or the
    #: paper's 'quantile' (appendix A.3). Not in the proto: a sampler/experiment choice.
    alpha_method: AlphaMethod = "solve"
    #: Fixed alpha / tau from the task; None = derived from the eps.
    alpha: float | None = None
    tau: float | None = None
    #: Exploration floor on pi.
    pi_min: float = 0.0
    #: Seed of the Bernoulli draws.
    seed: int = 0
    #: Streaming: the budget is paced over windows of this many items.
    window_items: int = 1000
    #: Maximum reviews of the task, all partitions together; 0 = no cap.
    hard_cap: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.rule, Rule):  # "threshold" and the like
            object.__setattr__(self, "rule", Rule(self.rule))
        check_sampling_values(self.budget_fraction, self.pi_min, self.beta, self.window_items)
        if self.hard_cap < 0:
            raise ValueError("hard_cap must be >= 0")

    @classmethod
    def from_task(cls, task: task_pb2.Task, defaults: SamplingParams) -> SamplingParams:
        """Resolve a ``Task`` (act.tasks): its fields where set, ``defaults`` otherwise.

        ``alpha_method`` is no task field and always comes from ``defaults``;
        alpha, tau, pi_min, seed and the hard cap are the task's own (unset =
        derived, no floor, seed 0, no cap).
        """
        cfg = task.sampling
        return cls(
            rule=RULES_BACK.get(cfg.rule, defaults.rule),
            mode=_MODES_BACK.get(cfg.mode, defaults.mode),
            budget_fraction=(
                task.budget.fraction if task.HasField("budget") else defaults.budget_fraction
            ),
            beta=cfg.beta if cfg.HasField("beta") else defaults.beta,
            alpha_method=defaults.alpha_method,
            alpha=cfg.alpha if cfg.HasField("alpha") else None,
            tau=cfg.tau if cfg.HasField("tau") else None,
            pi_min=cfg.pi_min,
            seed=cfg.seed,
            window_items=task.budget.window_items or defaults.window_items,
            hard_cap=task.budget.hard_cap,
        )  # fmt: skip
