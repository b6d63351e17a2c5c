"""The LLM annotator backend: re-ask, dead-letter reason, confidence, model choice."""

from __future__ import annotations

import math

import pytest
from act.v1 import common_pb2 as C
from act.v1 import item_pb2, task_pb2

from services.llm.annotator.backend import LLMAnnotatorBackend
from services.llm.settings import LLMOptions
from services.runtime.retry import PermanentError
from tests.llm.fakes import FakeClient


def task(**model) -> task_pb2.Task:
    t = task_pb2.Task(task_id="t1", modality=C.MODALITY_TEXT)
    for i, name in enumerate(["ham", "spam", "phishing"]):
        t.labels.add(index=i, name=name)
    if model:
        t.annotator_model.CopyFrom(C.ModelRef(**model))
    return t


ITEM = item_pb2.Item(item_id="i1", task_id="t1", text="Win a prize now!", reference_label=1)


async def test_naive_with_confidence_from_logprobs() -> None:
    client = FakeClient(["[1]"], logprob=math.log(0.9))
    result = await LLMAnnotatorBackend(client, LLMOptions()).annotate(
        task(), ITEM, C.ANNOTATION_STRATEGY_NAIVE
    )
    assert result.label_index == 1 and result.attempts == 1 and result.rationale == ""
    assert result.confidence == pytest.approx(0.9)
    assert result.usage.prompt_tokens == 100
    request = client.requests[0]
    assert request.top_logprobs == 10 and request.max_tokens == 16
    assert request.model == "fake-model"


async def test_cot_keeps_rationale() -> None:
    client = FakeClient(["[Prize bait is typical of spam.][1]"])
    result = await LLMAnnotatorBackend(client, LLMOptions()).annotate(
        task(), ITEM, C.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT
    )
    assert result.label_index == 1
    assert result.rationale == "Prize bait is typical of spam."
    assert client.requests[0].max_tokens == 512


async def test_reask_after_unparseable_output() -> None:
    client = FakeClient(["Sure! The answer is 1.", "[1]"])
    result = await LLMAnnotatorBackend(client, LLMOptions()).annotate(
        task(), ITEM, C.ANNOTATION_STRATEGY_NAIVE
    )
    assert result.label_index == 1 and result.attempts == 2
    assert result.usage.prompt_tokens == 200 and result.usage.latency_ms == 20.0
    second = client.requests[1].messages
    # The re-ask keeps the shared prefix and appends the bad answer and the complaint.
    assert second[:2] == client.requests[0].messages
    assert second[2].role == "assistant" and second[3].role == "user"
    assert "could not be read" in (second[3].plain_text() or "")


async def test_permanent_error_carries_raw_output_after_bounded_reasks() -> None:
    client = FakeClient(["[11]"])
    with pytest.raises(PermanentError, match="out of range") as info:
        await LLMAnnotatorBackend(client, LLMOptions(reask_attempts=2)).annotate(
            task(), ITEM, C.ANNOTATION_STRATEGY_NAIVE
        )
    assert info.value.raw_output == "[11]"
    assert len(client.requests) == 3


async def test_refusal_dead_letters_with_zero_reasks() -> None:
    client = FakeClient(["I'm sorry, I can't help with that."])
    with pytest.raises(PermanentError, match="unparseable annotation after 1 call"):
        await LLMAnnotatorBackend(client, LLMOptions(reask_attempts=0)).annotate(
            task(), ITEM, C.ANNOTATION_STRATEGY_NAIVE
        )


async def test_task_model_and_params() -> None:
    client = FakeClient(["[0]"])
    t = task(provider="vllm", model="qwen", params={"temperature": "0.3", "max_tokens": "8"})
    result = await LLMAnnotatorBackend(client, LLMOptions()).annotate(
        t, ITEM, C.ANNOTATION_STRATEGY_NAIVE
    )
    assert result.model == "qwen"
    assert client.requests[0].temperature == 0.3 and client.requests[0].max_tokens == 8


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ({"provider": "anthropic", "model": "claude"}, "provider"),
        ({"provider": "openai", "model": "m", "params": {"temperature": "hot"}}, "temperature"),
        ({"provider": "openai", "model": "m", "params": {"max_tokens": "0"}}, "max_tokens"),
    ],
)
async def test_bad_task_models_are_permanent(ref, match) -> None:
    with pytest.raises(PermanentError, match=match):
        await LLMAnnotatorBackend(FakeClient(["[0]"]), LLMOptions()).annotate(
            task(**ref), ITEM, C.ANNOTATION_STRATEGY_NAIVE
        )


async def test_no_logprobs_requested_when_disabled() -> None:
    client = FakeClient(["[0]"])
    result = await LLMAnnotatorBackend(client, LLMOptions(logprobs=False)).annotate(
        task(), ITEM, C.ANNOTATION_STRATEGY_NAIVE
    )
    assert client.requests[0].top_logprobs == 0 and result.confidence is None


async def test_prompt_never_contains_reference_label_field() -> None:
    client = FakeClient(["[0]"])
    await LLMAnnotatorBackend(client, LLMOptions()).annotate(
        task(), ITEM, C.ANNOTATION_STRATEGY_NAIVE
    )
    text = "".join(m.plain_text() or "" for m in client.requests[0].messages)
    assert "reference" not in text.lower()
