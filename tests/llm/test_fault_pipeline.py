"""Fault test: items -> annotator -> criticizer on the OpenAI-API fault server, real Kafka.

30% of model requests fail (429 with Retry-After, 500, a hang past the
client's timeout, truncated JSON, a refusal). Every item must end as exactly
one annotation (then exactly one critique or one criticizer dead letter) or
exactly one annotator dead letter, and every dead letter must say why.
"""

from __future__ import annotations

import pytest
from act.v1 import common_pb2 as C
from act.v1 import item_pb2, task_pb2

from services.devkit.fault_server import FaultConfig, OpenAIFaultServer
from services.llm.annotator.backend import LLMAnnotatorBackend
from services.llm.critic.backend import LLMCriticBackend
from services.llm.openai_client import OpenAICompatibleClient
from services.llm.settings import LLMOptions
from tests.llm.pipeline import run_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _task(task_id: str, annotation: int, critique: int) -> task_pb2.Task:
    t = task_pb2.Task(
        task_id=task_id,
        modality=C.MODALITY_TEXT,
        annotation_strategy=annotation,
        critique_strategy=critique,
    )
    for i, name in enumerate(["ham", "spam", "phishing"]):
        t.labels.add(index=i, name=name)
    t.annotator_model.CopyFrom(C.ModelRef(provider="openai-compatible", model="fault-a"))
    t.critic_model.CopyFrom(C.ModelRef(provider="openai-compatible", model="fault-c"))
    return t


async def test_every_item_ends_exactly_once_under_faults(kafka_bootstrap: str) -> None:
    server = OpenAIFaultServer(
        FaultConfig(latency_s=0.02, fault_rate=0.3, retry_after_s=1, hang_s=10.0, seed=11)
    )
    await server.start()
    options = LLMOptions(base_url=server.base_url, model="fault", timeout_s=1.0)
    a_client = OpenAICompatibleClient(options)
    c_client = OpenAICompatibleClient(options)
    tasks = [
        _task("naive-cot", C.ANNOTATION_STRATEGY_NAIVE, C.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT),
        _task("cot-logit", C.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT, C.CRITIQUE_STRATEGY_COT_LOGIT),
    ]
    items = [
        item_pb2.Item(
            item_id=f"item-{i:03d}",
            task_id=tasks[i % 2].task_id,
            text=f"Message {i}: meeting moved to {i % 12 + 1} pm.",
        )
        for i in range(48)
    ]
    # Forced faults: a model that never answers in format, and a server that always fails.
    items.append(item_pb2.Item(item_id="garbage", task_id="naive-cot", text="FAULT:garbage"))
    items.append(item_pb2.Item(item_id="down", task_id="cot-logit", text="FAULT:500"))
    try:
        result = await run_pipeline(
            kafka_bootstrap,
            tasks,
            items,
            LLMAnnotatorBackend(a_client, options),
            LLMCriticBackend(c_client, options),
            timeout_s=240,
        )
    finally:
        await a_client.aclose()
        await c_client.aclose()
        await server.stop()

    result.check_exactly_once(i.item_id for i in items)
    # Every kind of fault happened.
    assert set(server.stats.faults) == {
        "rate_limit",
        "server_error",
        "hang",
        "truncated_json",
        "unparseable",
    }
    letters = {d.item_id: d for d in result.letters("annotator")}
    assert letters["garbage"].error_type == "PermanentError"
    assert "unparseable annotation" in letters["garbage"].error_message
    assert letters["garbage"].raw_model_output.startswith("I'm sorry")
    assert letters["garbage"].attempts == 1  # permanent: no runtime retry
    assert letters["down"].error_type == "RetryableError"
    assert "server error (500)" in letters["down"].error_message
    assert letters["down"].attempts == 4
    for letter in result.dead_letters:
        assert letter.error_type and letter.error_message and letter.original_value
    # Most items make it through despite 30% faults.
    assert len(result.critiques) >= 40
    for c in result.critiques:
        assert 0.0 <= c.eps <= 1.0
        assert c.annotation.item.item_id and c.model.model == "fault-c"
        assert not c.self_criticism
        if c.strategy == C.CRITIQUE_STRATEGY_COT_LOGIT:
            assert c.WhichOneof("white_box") == "logit"
        else:
            assert c.strategy == C.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT and c.rationale
    for a in result.annotations:
        assert a.attempts >= 1 and a.prompt_template_sha256 and a.usage.latency_ms > 0
        assert a.model.model == "fault-a"
