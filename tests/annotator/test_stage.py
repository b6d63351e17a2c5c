"""The annotator stage over any backend: validation, blinding, the Annotation it emits."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from act.v1 import annotation_pb2, item_pb2, task_pb2
from act.v1 import common_pb2 as C

from services.annotator.__main__ import build_stage
from services.annotator.settings import AnnotatorSettings
from services.annotator.stage import AnnotatorStage, annotation_id
from services.backend_api.protocols import AnnotationResult, CallUsage
from services.runtime.config import KafkaSettings
from services.runtime.retry import PermanentError
from services.runtime.tasks import StaticTaskSource, TaskNotFoundError
from tests.support.harness import StageHarness


@dataclass
class RecordingBackend:
    """Returns a fixed result and records what it was shown."""

    result: AnnotationResult
    seen: list[item_pb2.Item] = field(default_factory=list)

    async def annotate(self, task, item, strategy) -> AnnotationResult:
        self.seen.append(item)
        return self.result


def task() -> task_pb2.Task:
    t = task_pb2.Task(task_id="t1", modality=C.MODALITY_TEXT)
    for i, name in enumerate(["ham", "spam"]):
        t.labels.add(index=i, name=name)
    t.annotator_model.CopyFrom(C.ModelRef(provider="vllm", model="qwen"))
    return t


ITEM = item_pb2.Item(item_id="i1", task_id="t1", text="hello", reference_label=1)


async def test_emits_annotation_and_hides_reference_label() -> None:
    backend = RecordingBackend(
        AnnotationResult(
            label_index=1,
            model="qwen",
            rationale="r",
            raw_output="[r][1]",
            confidence=0.8,
            prompt_template_sha256="ab" * 32,
            attempts=2,
            usage=CallUsage(10, 3, 0.001, 50.0),
        )
    )
    stage = AnnotatorStage(backend, StaticTaskSource([task()]), provider="openai")
    [out] = await StageHarness(stage).process(ITEM)
    assert not backend.seen[0].HasField("reference_label")
    a = out.value
    assert isinstance(a, annotation_pb2.Annotation)
    assert out.topic == "annotations" and out.key == "i1"
    assert a.item.reference_label == 1  # carried for evaluation
    assert a.label_index == 1 and a.label_name == "spam" and a.rationale == "r"
    assert a.model.provider == "vllm" and a.model.model == "qwen"
    assert a.strategy == C.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT  # the stage default
    assert a.confidence == pytest.approx(0.8) and a.attempts == 2
    assert a.usage.prompt_tokens == 10 and a.usage.latency_ms == 50.0
    assert a.annotation_id == annotation_id("t1", "i1") and a.HasField("created_at")


async def test_out_of_range_label_from_any_backend_is_permanent() -> None:
    backend = RecordingBackend(AnnotationResult(label_index=2, model="m", raw_output="[2]"))
    stage = AnnotatorStage(backend, StaticTaskSource([task()]))
    with pytest.raises(PermanentError, match="outside") as info:
        await StageHarness(stage).process(ITEM)
    assert info.value.raw_output == "[2]"


async def test_unknown_task_is_retryable_and_no_id_is_permanent() -> None:
    stage = AnnotatorStage(RecordingBackend(AnnotationResult(0, "m")), StaticTaskSource([]))
    with pytest.raises(TaskNotFoundError):
        await StageHarness(stage).process(ITEM)
    with pytest.raises(PermanentError):
        await StageHarness(stage).process(item_pb2.Item(task_id="t1", text="x"))


async def test_settings_from_environment_and_main(monkeypatch) -> None:
    monkeypatch.setenv("ACT_ANNOTATOR_API_KEY", "sk-env-secret")
    monkeypatch.setenv("ACT_ANNOTATOR_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("ACT_ANNOTATOR_CONCURRENCY", "64")
    monkeypatch.setenv("ACT_ANNOTATOR_DEFAULT_STRATEGY", "naive")
    settings = AnnotatorSettings()
    assert settings.llm.concurrency == 64 and settings.llm.base_url.endswith("/v1")
    assert "sk-env-secret" not in repr(settings)
    stage = build_stage(settings, KafkaSettings())
    assert stage.default_strategy == C.ANNOTATION_STRATEGY_NAIVE
    assert stage.provider == "openai"
