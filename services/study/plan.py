"""What the strategy study runs, and how many items fit the time budget (pure).

The grid is the paper's section 4 study (Figures 2-4) on local models:
every model annotates with both prompt strategies (Figure 2), and every model
criticises, with all seven strategies, the labels of the base annotator
(self- and cross-criticism, Figures 3 and 4) or, with ``pairs="all"``, the
labels of every model.

Sizing: a short calibration measures each model's seconds per call for every
strategy on a few items; the run then takes the largest seeded subset whose
projected wall time fits the budget. The whole grid on fewer items is worth
more than half of it on many: every insight compares cells of the grid on
the same items (paired), and a missing cell decides nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from act.v1 import common_pb2

S = common_pb2

#: The local profiles of deploy/llm-server.sh, weakest first.
PROFILES: tuple[str, ...] = ("smollm2", "qwen-0.5b", "qwen-1.5b")

#: Annotation prompt strategies (paper, section 4.1).
ANNOTATION_STRATEGIES: dict[str, common_pb2.AnnotationStrategy.ValueType] = {
    "naive": S.ANNOTATION_STRATEGY_NAIVE,
    "cot": S.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT,
}


@dataclass(frozen=True, slots=True)
class CriticStrategy:
    """One of the paper's seven criticism strategies (Tables 1 and 2)."""

    name: str
    value: common_pb2.CritiqueStrategy.ValueType
    white_box: bool
    reasoning: bool


#: Black-box first (Table 1), then white-box (Table 2), as in Figure 4.
CRITIC_STRATEGIES: dict[str, CriticStrategy] = {
    s.name: s
    for s in (
        CriticStrategy("naive", S.CRITIQUE_STRATEGY_NAIVE, white_box=False, reasoning=False),
        CriticStrategy(
            "cot", S.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT, white_box=False, reasoning=True
        ),
        CriticStrategy("mc", S.CRITIQUE_STRATEGY_MULTIPLE_CHOICE, white_box=False, reasoning=True),
        CriticStrategy(
            "devil", S.CRITIQUE_STRATEGY_DEVILS_ADVOCATE, white_box=False, reasoning=True
        ),
        CriticStrategy(
            "naive-logit", S.CRITIQUE_STRATEGY_NAIVE_LOGIT, white_box=True, reasoning=False
        ),
        CriticStrategy("cot-logit", S.CRITIQUE_STRATEGY_COT_LOGIT, white_box=True, reasoning=True),
        CriticStrategy(
            "cot-ppl", S.CRITIQUE_STRATEGY_COT_PERPLEXITY, white_box=True, reasoning=True
        ),
    )
}

PairMode = Literal["base", "all"]

#: The task the models see (the demo's wording for SpamAssassin).
INSTRUCTIONS = "Is this email unsolicited bulk mail (spam) or wanted mail (ham)?"


@dataclass(frozen=True)
class StudyConfig:
    """Parameters of one study run (the CLI's flags)."""

    profiles: tuple[str, ...] = PROFILES
    annotation_strategies: tuple[str, ...] = tuple(ANNOTATION_STRATEGIES)
    critic_strategies: tuple[str, ...] = tuple(CRITIC_STRATEGIES)
    #: "base": every model criticises the base annotator's labels (the paper's
    #: Figure 3: one annotator, self- and cross-criticism); "all": every
    #: model's labels (3x the critique calls for three models).
    pairs: PairMode = "base"
    #: The annotation strategy whose labels are criticised (the paper: CoT).
    base_annotation: str = "cot"
    #: The base annotator model; "" = the most accurate with base_annotation.
    base_model: str = ""
    budget_minutes: float = 110.0
    items: int | None = None  # fixed subset size (no sizing)
    calibration_items: int = 3
    #: Critiques run in chunks of this many items; the run stops adding chunks
    #: when the next one would end past the budget (not with --items).
    chunk_items: int = 5
    #: Seconds kept after the model calls for the bootstrap, figures and report.
    reserve_s: float = 120.0
    seed: int = 0
    max_text_chars: int = 600  # as the LLM demo: the local models' context is small
    resamples: int = 2000
    #: Profiles served by an already running server (profile -> /v1 URL).
    servers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [s for s in self.annotation_strategies if s not in ANNOTATION_STRATEGIES]
        unknown += [s for s in self.critic_strategies if s not in CRITIC_STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies: {', '.join(unknown)}")
        if self.base_annotation not in self.annotation_strategies:
            raise ValueError("base_annotation must be one of the annotation strategies")
        if self.base_model and self.base_model not in self.profiles:
            raise ValueError("base_model must be one of the profiles")
        if not self.profiles or len(set(self.profiles)) != len(self.profiles):
            raise ValueError("profiles must be given, each once")
        if (
            self.calibration_items < 1
            or self.chunk_items < 1
            or (self.items is not None and self.items < 1)
        ):
            raise ValueError("item counts must be positive")


@dataclass(frozen=True, slots=True)
class CallKey:
    """One cell of the grid: a (role, model, strategy) whose speed is measured."""

    role: Literal["annotate", "critique"]
    model: str
    strategy: str


@dataclass(frozen=True, slots=True)
class Sizing:
    """How many items the run takes, and why."""

    n_items: int
    seconds_per_item: float
    projected_s: float
    budget_s: float
    reason: str


def annotated_per_critic(config: StudyConfig) -> int:
    """How many annotators' labels each critic judges per item and strategy."""
    return 1 if config.pairs == "base" else len(config.profiles)


def annotate_seconds_per_item(
    config: StudyConfig, seconds_per_call: Mapping[CallKey, float]
) -> float:
    """Wall seconds every model's annotations take for one more item."""
    return sum(
        seconds_per_call[CallKey("annotate", m, a)]
        for m in config.profiles
        for a in config.annotation_strategies
    )


def critique_seconds_per_item(
    config: StudyConfig, seconds_per_call: Mapping[CallKey, float]
) -> float:
    """Wall seconds every critic's strategies take for one more item."""
    per_critic = annotated_per_critic(config)
    return sum(
        per_critic * seconds_per_call[CallKey("critique", m, c)]
        for m in config.profiles
        for c in config.critic_strategies
    )


def seconds_per_item(config: StudyConfig, seconds_per_call: Mapping[CallKey, float]) -> float:
    """Wall seconds the whole grid spends on one more item, from measured call times."""
    return annotate_seconds_per_item(config, seconds_per_call) + critique_seconds_per_item(
        config, seconds_per_call
    )


def chunk_fits(
    elapsed_s: float,
    chunk_items: int,
    critique_s_per_item: float,
    budget_s: float,
    reserve_s: float,
) -> bool:
    """Whether critiquing one more chunk of items still ends inside the budget.

    The run critiques in chunks and re-measures its speed after each one, so
    a calibration that guessed too fast costs at most the chunks it does not
    start, never a run past the budget (the full grid stays complete on the
    items that were done).
    """
    return elapsed_s + chunk_items * critique_s_per_item + reserve_s <= budget_s


def size_run(
    config: StudyConfig,
    seconds_per_call: Mapping[CallKey, float],
    *,
    elapsed_s: float,
    overhead_s: float,
    available: int,
) -> Sizing:
    """The largest subset whose projected wall time fits ``config.budget_minutes``.

    ``elapsed_s`` is what calibration took; ``overhead_s`` what is still to be
    spent outside model calls (server starts, the report). The calibration
    items are part of the subset (it is a prefix of one seeded order) and
    their annotations are reused, but their critiques of other models' labels
    are not done yet, so they are charged at the full critique cost: the
    projection errs on the long side.
    """
    budget_s = 60.0 * config.budget_minutes
    per_item = seconds_per_item(config, seconds_per_call)
    k = min(config.calibration_items, available)
    calib_left_s = k * critique_seconds_per_item(config, seconds_per_call)

    def projected(n: int) -> float:
        return elapsed_s + overhead_s + calib_left_s + max(0, n - k) * per_item

    if config.items is not None:
        n = min(config.items, available)
        return Sizing(
            n,
            per_item,
            projected(n),
            budget_s,
            f"{n} items fixed by --items; projected {projected(n) / 60:.1f} min "
            f"(budget {config.budget_minutes:g} min not applied)",
        )
    left = budget_s - projected(k)
    extra = max(0, math.floor(left / per_item)) if per_item > 0 else available
    n = max(k, min(available, k + extra))
    if left < 0:
        reason = (
            f"even the {k} calibration items need {projected(k) / 60:.1f} min, over the "
            f"{config.budget_minutes:g} min budget: the run keeps just them"
        )
    else:
        reason = (
            f"{n} items fit: {per_item:.1f} s per item for the whole grid, projected "
            f"{projected(n) / 60:.1f} min of the {config.budget_minutes:g} min budget "
            f"(calibration took {elapsed_s / 60:.1f} min)"
        )
    return Sizing(n, per_item, projected(n), budget_s, reason)


def critique_pairs(config: StudyConfig, base_model: str) -> list[tuple[str, str]]:
    """(annotator, critic) pairs to run: self- and cross-criticism."""
    annotators: Sequence[str] = [base_model] if config.pairs == "base" else config.profiles
    return [(a, c) for c in config.profiles for a in annotators]
