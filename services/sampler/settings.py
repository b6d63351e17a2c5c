"""Sampler settings and the sampling parameters of one task, resolved from ``act.tasks``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from act.v1 import common_pb2, task_pb2
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.sampling import DEFAULT_BETA, AlphaMethod, Rule
from services.runtime.config import StageSettings

RULES = {
    Rule.NORMALIZATION: common_pb2.SAMPLING_RULE_NORMALIZATION,
    Rule.EXPONENTIAL: common_pb2.SAMPLING_RULE_EXPONENTIAL,
    Rule.THRESHOLD: common_pb2.SAMPLING_RULE_THRESHOLD,
}
_RULES_BACK = {v: k for k, v in RULES.items()}
Mode = Literal["batch", "streaming"]


class SamplerSettings(StageSettings):
    """Sampler settings (env prefix ``ACT_SAMPLER_``), also the default task sampling."""

    model_config = SettingsConfigDict(env_prefix="ACT_SAMPLER_", extra="ignore")

    rule: Rule = Field(Rule.THRESHOLD, description="normalization, exponential or threshold.")
    mode: Mode = Field("streaming", description="batch (bounded data sets) or streaming.")
    budget_fraction: float = Field(0.1, ge=0.0, le=1.0, description="Budget b: B = floor(b*N).")
    beta: float = Field(DEFAULT_BETA, gt=0.0, description="Exponential weighting steepness.")
    alpha_method: AlphaMethod = Field(
        "solve",
        description=(
            "Exponential alpha: 'solve' (sum pi = B, pi stays the true inclusion probability) "
            "or 'quantile' (paper A.3; with beta=10 sum pi can be ~2B and the budget trim "
            "then drops many draws)."
        ),
    )
    pi_min: float = Field(0.0, ge=0.0, le=1.0, description="Exploration floor on pi.")
    seed: int = Field(0, ge=0, lt=2**64, description="Seed of the Bernoulli draws.")
    window_items: int = Field(1000, ge=1, description="Streaming pacing window (items).")
    hard_cap: int = Field(0, ge=0, description="Max reviews per task, all partitions; 0 = none.")
    pacing_tolerance: float = Field(
        0.005, ge=0.0, le=1.0, description="Streaming: force picks below (b - this) per window."
    )
    sketch_bins: int = Field(100, ge=2, le=65535, description="Streaming eps histogram bins.")
    sketch_half_life_items: float = Field(
        1000.0, gt=0.0, description="Streaming: items after which an eps counts half."
    )
    max_batch: int = Field(
        256, ge=1, description="Largest batch (items) batch mode accepts; <= max_in_flight."
    )
    batch_timeout_s: float = Field(60.0, gt=0.0, description="Batch incomplete after this: DLQ.")
    task_source: Literal["topic", "settings"] = Field(
        "topic",
        description=(
            "'topic': each task's budget and rule from act.tasks (these settings fill what a "
            "task leaves unset); 'settings': these settings for every task."
        ),
    )

    @model_validator(mode="after")
    def _batch_fits(self) -> SamplerSettings:
        # Waiting batch records hold in-flight slots and ledger entries; a batch
        # larger than either would wait forever for records never fetched.
        if self.max_batch > self.max_in_flight or self.max_batch > self.max_buffered:
            raise ValueError("max_batch must be <= max_in_flight and <= max_buffered")
        return self


# ---------------------------------------------------------------- task config


@dataclass(frozen=True, slots=True)
class TaskSampling:
    """The sampling parameters of one task, resolved."""

    rule: Rule
    mode: Mode
    budget_fraction: float
    beta: float = DEFAULT_BETA
    alpha_method: AlphaMethod = "solve"
    alpha: float | None = None
    tau: float | None = None
    pi_min: float = 0.0
    seed: int = 0
    window_items: int = 1000
    hard_cap: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.budget_fraction <= 1.0:
            raise ValueError(f"budget fraction {self.budget_fraction} outside [0, 1]")
        if not 0.0 <= self.pi_min <= 1.0:
            raise ValueError(f"pi_min {self.pi_min} outside [0, 1]")
        if self.beta <= 0 or self.window_items < 1 or self.hard_cap < 0:
            raise ValueError("beta must be > 0, window_items >= 1 and hard_cap >= 0")

    @classmethod
    def from_settings(cls, s: SamplerSettings) -> TaskSampling:
        """What every task gets when no task source is configured (and its fallbacks)."""
        return cls(
            rule=s.rule, mode=s.mode, budget_fraction=s.budget_fraction, beta=s.beta,
            alpha_method=s.alpha_method, pi_min=s.pi_min, seed=s.seed,
            window_items=s.window_items, hard_cap=s.hard_cap,
        )  # fmt: skip

    @classmethod
    def from_task(cls, task: task_pb2.Task, defaults: TaskSampling) -> TaskSampling:
        """Resolve a ``Task`` (act.tasks): its fields where set, ``defaults`` otherwise."""
        cfg = task.sampling
        mode: Mode = defaults.mode
        if cfg.mode == common_pb2.SAMPLING_MODE_BATCH:
            mode = "batch"
        elif cfg.mode == common_pb2.SAMPLING_MODE_STREAMING:
            mode = "streaming"
        return cls(
            rule=_RULES_BACK.get(cfg.rule, defaults.rule),
            mode=mode,
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
