"""Planning the main job: which items stream, which decide the budget, and the task.

Pure of services and I/O beyond the built-in data sets, so it is unit tested
without Kafka (``tests/demo/test_steps.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from act.v1 import common_pb2, task_pb2

from services.cli.datasets import get_source
from services.core.metrics import abs_score, accuracy, ideal_budget, recommended_budget
from services.fewshot.pair import PROVIDER, FewShotPair, pair_for_dataset
from services.fewshot.pools import LabelledPool
from services.fewshot.seed import DEFAULT_SEED, select_seed


@dataclass(frozen=True, slots=True)
class DemoDataset:
    """How one built-in data set runs through the demo."""

    name: Literal["fashion", "spam"]
    source: str  # services.cli.datasets / services.fewshot.pools name
    modality: common_pb2.Modality.ValueType
    trainer_model: str
    instructions: str
    default_items: int


DATASETS: dict[str, DemoDataset] = {
    "fashion": DemoDataset(
        "fashion",
        "fashion-mnist",
        common_pb2.MODALITY_IMAGE,
        "cnn-28x28",
        "Which kind of clothing or accessory does the image show?",
        6000,
    ),
    "spam": DemoDataset(
        "spam",
        "spam-assassin",
        common_pb2.MODALITY_TEXT,
        "minilm-head",
        "Is this email unsolicited bulk mail (spam) or wanted mail (ham)?",
        3000,
    ),
}


@dataclass(frozen=True)
class DemoConfig:
    """What one demo run does."""

    dataset: DemoDataset
    items: int
    out: Path
    bootstrap: str
    database_url: str
    rule: Literal["exponential", "threshold", "normalization"] = "exponential"
    selection_items: int = 500
    reviewer_accuracy: float = 1.0
    seeds: int = 5
    review_in_browser: int = 0  # review requests the replay reviewer leaves for a person
    #: "fewshot": the few-shot local models; "llm": a local LLM server (services.demo.llm).
    backend: Literal["fewshot", "llm"] = "fewshot"
    #: The LLM profile (deploy/llm-server.sh) with ``backend="llm"``.
    llm_profile: str = "qwen-1.5b"
    #: Item text cut to this many characters in the LLM's prompts (its small context).
    llm_max_text_chars: int = 600
    stall_s: float = 180.0
    remind_every_s: float = 30.0  # while review requests wait for a person
    fit_timeout_s: float = 600.0
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))


# ------------------------------------------------------------------ items


@dataclass(frozen=True)
class Plan:
    """Which items stream and which form the model-selection set."""

    pool: LabelledPool
    streamed: np.ndarray  # pool indices
    selection: np.ndarray  # pool indices, disjoint from streamed and the seed
    seed_size: int


def plan_items(pool: LabelledPool, n_items: int, n_selection: int, pair: FewShotPair) -> Plan:
    """A seeded sample of items outside the few-shot seed (the models' training data)."""
    seed_idx = set(int(i) for i in pair.selection.indices)
    rest = np.array([i for i in range(len(pool)) if i not in seed_idx], dtype=np.int64)
    order = rest[np.random.default_rng(0).permutation(rest.size)]
    if n_items + n_selection > order.size:
        raise ValueError(
            f"{pool.name} has {order.size} items outside the seed; asked for {n_items} to "
            f"stream and {n_selection} for model selection"
        )
    return Plan(
        pool,
        np.sort(order[:n_items]),
        order[n_items : n_items + n_selection],
        len(seed_idx),
    )


def streamed_records(config: DemoConfig, plan: Plan) -> Iterator[dict[str, Any]]:
    """The data set's records of the streamed items, in file order."""
    wanted = {plan.pool.ids[int(i)] for i in plan.streamed}
    for record in get_source(config.dataset.source).iter_records():
        if record["id"] in wanted:
            yield record


def reviewer_labels(plan: Plan) -> Mapping[str, int]:
    """The data set's human labels of the streamed items (what the replay reviewer answers)."""
    return {plan.pool.ids[int(i)]: plan.pool.label_of(int(i)) for i in plan.streamed}


# -------------------------------------------------------- few-shot models


def seed_pair(dataset: DemoDataset) -> FewShotPair:
    """The few-shot pair the services will fit (same data set, seed size and seed)."""
    return pair_for_dataset(dataset.source)


def check_seed_is_default(pair: FewShotPair, pool: LabelledPool) -> None:
    """The demo's seed is the services' seed (both use the defaults)."""
    expected = select_seed(
        pool.ids,
        pool.label_of,
        n_classes=pool.n_classes,
        per_class=len(pair.selection.indices) // pool.n_classes,
        seed=DEFAULT_SEED,
    )
    if not np.array_equal(expected.indices, pair.selection.indices):
        raise RuntimeError("the few-shot seed differs from the services' default seed")


# ----------------------------------------------------------------- budget


@dataclass(frozen=True)
class Selection:
    """The paper's model-selection guideline on a small human-labelled set."""

    annotator: str
    critic: str
    accuracy: float
    critic_abs: float
    ideal_budget: float
    recommended_budget: float


def select_budget(pair: FewShotPair, task: task_pb2.Task, plan: Plan) -> Selection:
    """Annotator accuracy, critic ABS, ideal and recommended budget on ``plan.selection``."""
    items = plan.pool.items(plan.selection, task.task_id)
    human = np.array([plan.pool.label_of(int(i)) for i in plan.selection], dtype=np.int64)
    machine = np.array([r.label_index for r in pair.annotator.annotate_many(task, items)])
    eps = pair.critic.eps_many(items, machine.tolist())
    ideal = ideal_budget(machine, human)
    return Selection(
        annotator=pair.annotator.name,
        critic=pair.critic.name,
        accuracy=accuracy(machine, human),
        critic_abs=abs_score(machine, human, eps),
        ideal_budget=ideal,
        recommended_budget=recommended_budget(ideal),
    )


# ------------------------------------------------------------------- task


def make_task(
    config: DemoConfig,
    pool: LabelledPool,
    budget: float,
    *,
    llm_base_url: str = "",
    critique: common_pb2.CritiqueStrategy.ValueType = common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT,
) -> task_pb2.Task:
    """The demo task: few-shot models (or, with ``llm_base_url``, the local LLM as
    annotator and critic), streaming sampling with ``config.rule``."""
    ds = config.dataset
    ref = common_pb2.ModelRef(provider=PROVIDER, model="default", params={"dataset": ds.source})
    if llm_base_url:
        ref = common_pb2.ModelRef(
            provider="openai-compatible", model=config.llm_profile, base_url=llm_base_url
        )
    rules = {
        "exponential": common_pb2.SAMPLING_RULE_EXPONENTIAL,
        "threshold": common_pb2.SAMPLING_RULE_THRESHOLD,
        "normalization": common_pb2.SAMPLING_RULE_NORMALIZATION,
    }
    return task_pb2.Task(
        task_id=f"demo-{ds.name}-{config.run_id}",
        name=f"ACT demo ({pool.name})",
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(pool.label_names)],
        modality=ds.modality,
        instructions=ds.instructions,
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        critique_strategy=critique,
        annotator_model=ref,
        # Few-shot: "default" resolves to a different model for the critic;
        # LLM: self-criticism (one local model).
        critic_model=ref,
        budget=task_pb2.Budget(fraction=budget),
        sampling=task_pb2.SamplingConfig(
            rule=rules[config.rule], mode=common_pb2.SAMPLING_MODE_STREAMING, seed=0
        ),
    )
