"""The plan of a chaos run: its configuration, its task and its disruptions (pure).

:class:`ChaosConfig` is plain data; :func:`plan_events` draws the run's kills
and restarts from its seed, so a failing run can be repeated exactly;
:func:`make_task` is the task the run publishes (the few-shot models of the
configured data set, streaming threshold sampling with a paced budget).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from act.v1 import common_pb2, task_pb2

from services.devkit.chaos_fleet import SERVICES
from services.fewshot.pair import PROVIDER
from services.fewshot.pools import LabelledPool

EventKind = Literal["kill", "broker", "database"]


@dataclass(frozen=True)
class ChaosConfig:
    """What one chaos run does (pure data; every draw comes from ``seed``)."""

    items: int = 3000
    kills: int = 6
    broker_restarts: int = 1
    db_restarts: int = 1
    seed: int = 0
    #: Items per second through the ingest service: the stream spans the plan.
    items_per_s: float = 30.0
    #: Items per Ingest call (a failed call is sent again whole).
    batch_items: int = 100
    #: Kills go to at least this many different services (when kills allow).
    min_services_killed: int = 4
    #: The task's review budget: fraction b and the pacing window W (streaming mode).
    budget: float = 0.2
    window_items: int = 50
    #: How long the database stays down on a restart (its clients must wait it out).
    db_downtime_s: float = 5.0
    partitions: int = 4
    dataset: str = "fashion-mnist"
    #: Fail when no label, dead letter or stored row arrived for this long.
    stall_s: float = 180.0
    #: After the last outcome: how long late duplicates get to show up.
    settle_s: float = 3.0
    #: Where logs, the trainer's store and the stacks live; None = a temporary folder.
    out: Path | None = None
    keep: bool = False  # keep a temporary run folder


@dataclass(frozen=True)
class Event:
    """One planned disruption, ``at_s`` seconds after the stream starts."""

    at_s: float
    kind: EventKind
    service: str = ""
    downtime_s: float = 0.0


def plan_events(config: ChaosConfig) -> list[Event]:
    """The run's disruptions, deterministic by seed, spread over the stream.

    Kills reach ``min_services_killed`` different services; the broker and
    database restarts fall at drawn places among them.
    """
    rng = random.Random(config.seed)
    distinct = min(config.kills, config.min_services_killed, len(SERVICES))
    targets = rng.sample(SERVICES, distinct)
    targets += [rng.choice(SERVICES) for _ in range(config.kills - distinct)]
    rng.shuffle(targets)
    kinds: list[tuple[EventKind, str]] = [("kill", s) for s in targets]
    restarts: list[tuple[EventKind, int]] = [
        ("broker", config.broker_restarts),
        ("database", config.db_restarts),
    ]
    for kind, count in restarts:
        for _ in range(count):
            kinds.insert(rng.randrange(len(kinds) + 1), (kind, ""))
    stream_s = config.items / config.items_per_s
    n = len(kinds)
    return [
        Event(
            at_s=stream_s * (0.08 + 0.8 * (i + rng.random()) / n),
            kind=kind,
            service=service,
            downtime_s=round(rng.uniform(0.0, 1.5), 2) if kind == "kill" else 0.0,
        )
        for i, (kind, service) in enumerate(kinds)
    ]


def make_task(config: ChaosConfig, pool: LabelledPool) -> task_pb2.Task:
    """The run's task: few-shot models, a paced streaming budget, threshold rule."""
    ref = common_pb2.ModelRef(
        provider=PROVIDER, model="default", params={"dataset": config.dataset}
    )
    modality = common_pb2.MODALITY_TEXT if pool.modality == "text" else common_pb2.MODALITY_IMAGE
    return task_pb2.Task(
        task_id=f"chaos-{uuid.uuid4().hex[:8]}",
        name=f"chaos ({pool.name})",
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(pool.label_names)],
        modality=modality,
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        critique_strategy=common_pb2.CRITIQUE_STRATEGY_NAIVE,
        annotator_model=ref,
        critic_model=ref,
        budget=task_pb2.Budget(fraction=config.budget, window_items=config.window_items),
        sampling=task_pb2.SamplingConfig(
            rule=common_pb2.SAMPLING_RULE_THRESHOLD,
            mode=common_pb2.SAMPLING_MODE_STREAMING,
            seed=config.seed,
        ),
    )
