"""items -> annotator -> criticizer through a real broker, both stages in this process."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from act.v1 import annotation_pb2, critique_pb2, dlq_pb2, item_pb2, task_pb2
from aiokafka import AIOKafkaProducer

from services.annotator.settings import AnnotatorSettings
from services.annotator.stage import AnnotatorStage
from services.backend_api.protocols import AnnotatorBackend, CriticBackend
from services.criticizer.settings import CriticizerSettings
from services.criticizer.stage import CriticizerStage
from services.devkit.kafkaio import make_topics, topic, unique_prefix
from services.runtime.runner import StageRunner
from services.runtime.tasks import StaticTaskSource
from tests.support.kafkaio import Collector

S = TypeVar("S", AnnotatorSettings, CriticizerSettings)

TOPICS = ("items", "annotations", "critiques", "dlq", "tasks")


@dataclass
class PipelineResult:
    """Everything the two stages committed."""

    annotations: list[annotation_pb2.Annotation] = field(default_factory=list)
    critiques: list[critique_pb2.Critique] = field(default_factory=list)
    dead_letters: list[dlq_pb2.DeadLetter] = field(default_factory=list)
    seconds: float = 0.0

    def letters(self, stage: str) -> list[dlq_pb2.DeadLetter]:
        """Dead letters of one stage."""
        return [d for d in self.dead_letters if d.stage == stage]

    def check_exactly_once(self, item_ids: Iterable[str]) -> None:
        """Every item: one annotation xor one annotator dead letter; every annotation:
        one critique xor one criticizer dead letter. Raises AssertionError otherwise."""
        ids = list(item_ids)
        annotated = Counter(a.item.item_id for a in self.annotations)
        a_dead = Counter(d.item_id for d in self.letters("annotator"))
        criticised = Counter(c.annotation.item.item_id for c in self.critiques)
        c_dead = Counter(d.item_id for d in self.letters("criticizer"))
        for item_id in ids:
            assert annotated[item_id] + a_dead[item_id] == 1, (item_id, annotated, a_dead)
            if annotated[item_id]:
                assert criticised[item_id] + c_dead[item_id] == 1, (item_id, criticised, c_dead)
            else:
                assert criticised[item_id] + c_dead[item_id] == 0, item_id
        assert set(annotated) | set(a_dead) == set(ids)


def stage_settings(cls: type[S], group: str, **overrides: object) -> S:
    """A test stage's settings (runtime part: no metrics/gRPC ports, quick backoff)."""
    base: dict[str, object] = {
        "group_id": group,
        "metrics_port": 0,
        "grpc_port": 0,
        "log_json": True,
        "log_level": "WARNING",
        "max_attempts": 4,
        "backoff_initial_ms": 50,
        "backoff_max_ms": 2_000,
        "handler_timeout_s": 120.0,
        "commit_interval_ms": 50,
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
    }
    base.update(overrides)
    return cls(stage=base)  # type: ignore[arg-type]


async def produce(bootstrap: str, topic_name: str, items: Sequence[item_pb2.Item]) -> None:
    """Produce items keyed by item id."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic_name, i.SerializeToString(), key=i.item_id.encode())
            for i in items
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run_pipeline(
    bootstrap: str,
    tasks: Sequence[task_pb2.Task],
    items: Sequence[item_pb2.Item],
    annotator: AnnotatorBackend,
    critic: CriticBackend,
    *,
    timeout_s: float = 180.0,
    grace_s: float = 1.0,
    partitions: int = 3,
    annotator_overrides: dict[str, object] | None = None,
    critic_overrides: dict[str, object] | None = None,
) -> PipelineResult:
    """Run both stages until every item is accounted for; return what they committed."""
    prefix = unique_prefix()
    kafka = await make_topics(bootstrap, prefix, TOPICS, partitions=partitions)
    source = StaticTaskSource(tasks)
    run_id = uuid.uuid4().hex[:8]
    a_settings = stage_settings(
        AnnotatorSettings, f"act-annotator-{run_id}", **(annotator_overrides or {})
    )
    c_settings = stage_settings(
        CriticizerSettings, f"act-criticizer-{run_id}", **(critic_overrides or {})
    )
    a_runner = StageRunner(AnnotatorStage(annotator, source), kafka, a_settings.stage)
    c_runner = StageRunner(CriticizerStage(critic, source), kafka, c_settings.stage)
    collector = Collector(kafka, ["annotations", "critiques", "dlq"])
    await collector.start()
    runs = [asyncio.create_task(a_runner.run()), asyncio.create_task(c_runner.run())]
    result = PipelineResult()
    started = time.perf_counter()
    try:
        await produce(bootstrap, topic(kafka, "items"), items)
        deadline = time.monotonic() + timeout_s
        while True:
            for run in runs:
                if run.done():
                    run.result()
                    raise RuntimeError("a stage stopped early")
            _decode(collector, result)
            n_ann = len(result.annotations)
            done = (
                n_ann + len(result.letters("annotator")) >= len(items)
                and len(result.critiques) + len(result.letters("criticizer")) >= n_ann
            )
            if done:
                result.seconds = time.perf_counter() - started
                await asyncio.sleep(grace_s)  # late duplicates would show up now
                _decode(collector, result)
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"pipeline incomplete: {n_ann} annotations, {len(result.critiques)} "
                    f"critiques, {len(result.dead_letters)} dead letters of {len(items)} items"
                )
            await asyncio.sleep(0.1)
    finally:
        a_runner.stop()
        c_runner.stop()
        for run in runs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run, timeout=60)
        await collector.stop()


def _decode(collector: Collector, result: PipelineResult) -> None:
    result.annotations = [
        annotation_pb2.Annotation.FromString(v) for _, v in collector.records["annotations"]
    ]
    result.critiques = [
        critique_pb2.Critique.FromString(v) for _, v in collector.records["critiques"]
    ]
    result.dead_letters = [dlq_pb2.DeadLetter.FromString(v) for _, v in collector.records["dlq"]]
