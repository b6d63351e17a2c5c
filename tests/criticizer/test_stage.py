"""The criticizer stage over any backend: validation, fields, self-criticism."""

from __future__ import annotations

import pytest
from act.v1 import annotation_pb2, item_pb2, task_pb2
from act.v1 import common_pb2 as C

from services.backend_api.protocols import CritiqueResult
from services.criticizer.__main__ import build_stage
from services.criticizer.settings import CriticizerSettings
from services.criticizer.stage import CriticizerStage, same_model
from services.runtime.config import KafkaSettings
from services.runtime.retry import PermanentError
from services.runtime.tasks import StaticTaskSource
from tests.support.harness import StageHarness


class Backend:
    def __init__(self, result: CritiqueResult) -> None:
        self.result = result
        self.seen: list[annotation_pb2.Annotation] = []

    async def critique(self, task, annotation, strategy) -> CritiqueResult:
        self.seen.append(annotation)
        return self.result


def task(strategy=C.CRITIQUE_STRATEGY_NAIVE, critic="gpt-4o") -> task_pb2.Task:
    t = task_pb2.Task(task_id="t1", modality=C.MODALITY_TEXT, critique_strategy=strategy)
    for i, name in enumerate(["ham", "spam"]):
        t.labels.add(index=i, name=name)
    t.critic_model.CopyFrom(C.ModelRef(provider="openai", model=critic))
    return t


def annotation() -> annotation_pb2.Annotation:
    a = annotation_pb2.Annotation(
        label_index=1, model=C.ModelRef(provider="openai", model="gpt-4o")
    )
    a.item.CopyFrom(item_pb2.Item(item_id="i1", task_id="t1", text="x", reference_label=0))
    return a


async def run(result: CritiqueResult, **kw):
    backend = Backend(result)
    stage = CriticizerStage(backend, StaticTaskSource([task(**kw)]), provider="openai")
    assert stage.identify(annotation()).item_id == "i1"
    [out] = await StageHarness(stage).process(annotation())
    assert not backend.seen[0].item.HasField("reference_label")
    assert out.topic == "critiques" and out.key == "i1"
    return out.value


async def test_black_box_fields_and_self_criticism() -> None:
    c = await run(CritiqueResult(eps=0.3, model="gpt-4o", rationale="r"))
    assert c.eps == pytest.approx(0.3) and c.WhichOneof("white_box") is None
    assert c.self_criticism and c.annotation.item.reference_label == 0
    cross = await run(CritiqueResult(eps=0.3, model="claude"), critic="claude")
    assert not cross.self_criticism


async def test_logit_perplexity_and_mc_fields() -> None:
    c = await run(
        CritiqueResult(eps=0.6, model="m", p_yes=0.3, p_no=0.2, answer_token="Yes"),
        strategy=C.CRITIQUE_STRATEGY_NAIVE_LOGIT,
    )
    assert c.WhichOneof("white_box") == "logit" and c.logit.answer_token == "Yes"
    c = await run(
        CritiqueResult(eps=0.9, model="m", perplexity=1.5, priority_score=1.8, answer_token="yes"),
        strategy=C.CRITIQUE_STRATEGY_COT_PERPLEXITY,
    )
    assert c.WhichOneof("white_box") == "perplexity" and c.perplexity.answer_label == 1
    assert c.perplexity.priority_score == pytest.approx(1.8)
    c = await run(
        CritiqueResult(eps=0.75, model="m", multiple_choice_level=4),
        strategy=C.CRITIQUE_STRATEGY_MULTIPLE_CHOICE,
    )
    assert c.multiple_choice_level == 4


@pytest.mark.parametrize(
    "result",
    [
        CritiqueResult(eps=1.7, model="m", raw_output="[1.7]"),
        CritiqueResult(eps=-0.2, model="m"),
        CritiqueResult(eps=float("nan"), model="m"),
        CritiqueResult(eps=0.5, model="m", multiple_choice_level=6),
    ],
)
async def test_invalid_backend_results_are_permanent(result) -> None:
    with pytest.raises(PermanentError):
        await run(result)


def test_same_model() -> None:
    ref = C.ModelRef
    assert same_model(ref(provider="vllm", model="q"), ref(provider="openai-compatible", model="q"))
    assert not same_model(ref(provider="anthropic", model="q"), ref(provider="openai", model="q"))
    assert not same_model(ref(model="a"), ref(model="b"))
    assert not same_model(ref(), ref())


def test_settings_and_main(monkeypatch) -> None:
    monkeypatch.setenv("ACT_CRITICIZER_DEFAULT_STRATEGY", "cot-logit")
    monkeypatch.setenv("ACT_CRITICIZER_PROVIDER", "anthropic")
    monkeypatch.setenv("ACT_CRITICIZER_API_KEY", "k")
    settings = CriticizerSettings()
    stage = build_stage(settings, KafkaSettings())
    assert stage.default_strategy == C.CRITIQUE_STRATEGY_COT_LOGIT
    assert stage.provider == "anthropic"
