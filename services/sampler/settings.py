"""Sampler settings; they also give every task its default :class:`SamplingParams`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.params import Mode, SamplingParams
from services.core.sampling import DEFAULT_BETA, AlphaMethod, Rule
from services.runtime.config import StageSettings
from services.sampler.second_critic import SecondCriticMode

__all__ = ["Mode", "SamplerSettings", "SamplingParams"]


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
        100_000,
        ge=1,
        description=(
            "Largest batch (items) batch mode accepts: its critiques wait in memory (and in the "
            "changelog) until the batch is complete."
        ),
    )
    batch_timeout_s: float = Field(
        600.0,
        gt=0.0,
        description="A batch incomplete this long after its first item: its items go to the DLQ.",
    )
    task_source: Literal["topic", "settings"] = Field(
        "topic",
        description=(
            "'topic': each task's budget and rule from act.tasks (these settings fill what a "
            "task leaves unset); 'settings': these settings for every task."
        ),
    )

    second_critic: SecondCriticMode = Field(
        "auto",
        description=(
            "Streaming mode: 'auto' fuses each critique's eps with the trainer's latest "
            "model of the task (act.models) when the trainer found the fusion better on "
            "validation; 'off': the critic's eps alone."
        ),
    )

    def sampling_params(self) -> SamplingParams:
        """What every task gets without a task source, and the fallbacks of a task's fields."""
        return SamplingParams(
            rule=self.rule, mode=self.mode, budget_fraction=self.budget_fraction,
            beta=self.beta, alpha_method=self.alpha_method, pi_min=self.pi_min,
            seed=self.seed, window_items=self.window_items, hard_cap=self.hard_cap,
        )  # fmt: skip
