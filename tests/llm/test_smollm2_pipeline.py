"""Acceptance: every strategy end to end on a real local model, through real Kafka.

items -> annotator -> criticizer with SmolLM2-135M-Instruct behind
llama-cpp-python's OpenAI-compatible server, once per combination of the 2
annotation and 7 criticism strategies. Each combination gets one item,
alternating e-mails (text) and 28x28 images (SmolLM2 is text-only: it sees a
character rendering, see services.llm.images), so every criticism strategy
meets both modalities. Decoding is grammar-constrained (``gbnf``) so the tiny
model keeps the formats; parsing stays strict. SmolLM2's labels are weak: the
test checks the machinery (eps in [0, 1], each strategy's own fields, real
logprobs), not quality.
"""

from __future__ import annotations

import math

import pytest
from act.v1 import common_pb2 as C
from act.v1 import item_pb2, task_pb2

from services.llm.annotator.backend import LLMAnnotatorBackend
from services.llm.critic.backend import LLMCriticBackend
from services.llm.critic.scoring import MC_EPS
from services.llm.openai_client import OpenAICompatibleClient
from services.llm.settings import LLMOptions
from tests.llm.pipeline import run_pipeline
from tests.llm.samples import SOURCES
from tests.llm.smollm2 import MODEL

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ANNOTATION = [C.ANNOTATION_STRATEGY_NAIVE, C.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT]
CRITIQUE = list(range(1, 8))  # the seven CritiqueStrategy values


def options(base_url: str) -> LLMOptions:
    """SmolLM2 settings: one request at a time (the server serialises), short CoT."""
    return LLMOptions(
        base_url=base_url,
        model=MODEL,
        structured_output="gbnf",
        supports_images=False,
        max_tokens_naive=8,
        max_tokens_cot=40,
        top_logprobs=10,
        concurrency=1,
        timeout_s=150,
    )


def build_tasks() -> tuple[list[task_pb2.Task], list[item_pb2.Item]]:
    tasks, items = [], []
    for a_index, a in enumerate(ANNOTATION):
        for c in CRITIQUE:
            modality = "text" if (a_index + c) % 2 == 0 else "image"
            task_id = f"{modality}-{C.AnnotationStrategy.Name(a)[20:].lower()}-c{c}"
            labels, task_items = SOURCES[modality](task_id, 1, c)
            task = task_pb2.Task(
                task_id=task_id,
                modality=C.MODALITY_TEXT if modality == "text" else C.MODALITY_IMAGE,
                instructions="Is the e-mail spam?"
                if modality == "text"
                else "Which Fashion-MNIST class is the clothing item?",
                annotation_strategy=a,
                critique_strategy=c,
            )
            for i, name in enumerate(labels):
                task.labels.add(index=i, name=name)
            task.annotator_model.CopyFrom(C.ModelRef(provider="llama-cpp", model=MODEL))
            task.critic_model.CopyFrom(C.ModelRef(provider="llama-cpp", model=MODEL))
            tasks.append(task)
            items.extend(task_items)
    return tasks, items


async def test_all_fourteen_strategy_pairs_on_smollm2(
    kafka_bootstrap: str, smollm2_base_url: str
) -> None:
    opts = options(smollm2_base_url)
    a_client, c_client = OpenAICompatibleClient(opts), OpenAICompatibleClient(opts)
    tasks, items = build_tasks()
    try:
        result = await run_pipeline(
            kafka_bootstrap,
            tasks,
            items,
            LLMAnnotatorBackend(a_client, opts),
            LLMCriticBackend(c_client, opts),
            timeout_s=400,
            grace_s=0.5,
            annotator_overrides={"handler_timeout_s": 300.0, "max_attempts": 2},
            critic_overrides={"handler_timeout_s": 300.0, "max_attempts": 2},
        )
    finally:
        await a_client.aclose()
        await c_client.aclose()

    result.check_exactly_once(i.item_id for i in items)
    assert not result.dead_letters, [(d.item_id, d.error_message) for d in result.dead_letters]
    assert len(result.critiques) == len(items) == 14
    seen = {(c.annotation.strategy, c.strategy) for c in result.critiques}
    assert seen == {(a, c) for a in ANNOTATION for c in CRITIQUE}

    for a in result.annotations:
        assert 0 <= a.label_index < (2 if a.item.text else 10)
        assert a.model.model == MODEL and a.prompt_template_sha256
        assert a.usage.prompt_tokens > 0 and a.usage.completion_tokens > 0
        assert a.HasField("confidence") and 0.0 < a.confidence <= 1.0  # real logprobs
        if a.strategy == C.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT:
            assert a.rationale

    for c in result.critiques:
        assert 0.0 <= c.eps <= 1.0 and math.isfinite(c.eps)
        assert c.self_criticism and c.model.model == MODEL
        assert c.annotation.item.HasField("reference_label")  # carried along, never shown
        kind = c.WhichOneof("white_box")
        if c.strategy == C.CRITIQUE_STRATEGY_MULTIPLE_CHOICE:
            assert c.HasField("multiple_choice_level")
            assert c.eps == MC_EPS[c.multiple_choice_level]
        else:
            assert not c.HasField("multiple_choice_level")
        if c.strategy in (C.CRITIQUE_STRATEGY_NAIVE_LOGIT, C.CRITIQUE_STRATEGY_COT_LOGIT):
            assert kind == "logit"
            assert c.logit.p_yes >= 0 and c.logit.p_no >= 0 and c.logit.p_yes + c.logit.p_no > 0
            assert c.eps == pytest.approx(c.logit.p_yes / (c.logit.p_yes + c.logit.p_no))
            assert c.logit.answer_token.strip().lower() in ("yes", "no")
        elif c.strategy == C.CRITIQUE_STRATEGY_COT_PERPLEXITY:
            assert kind == "perplexity"
            assert c.perplexity.perplexity >= 1.0 and c.perplexity.answer_label in (0, 1)
            assert 0.0 <= c.perplexity.priority_score <= 2.0
            assert c.eps == pytest.approx(c.perplexity.priority_score / 2)
        else:
            assert kind is None
        if c.strategy not in (C.CRITIQUE_STRATEGY_NAIVE, C.CRITIQUE_STRATEGY_NAIVE_LOGIT):
            assert c.rationale
