"""The batch path as a criticizer: annotations -> critiques, logprob refusals, both kinds."""

from __future__ import annotations

import asyncio
import re

import pytest
from act.v1 import annotation_pb2, batch_pb2, common_pb2, dlq_pb2

from services.backend_api.protocols import CallUsage
from services.batchapi.app import BatchProcess
from services.batchapi.driver import custom_id
from services.batchapi.kinds import AnnotatorKind, CriticizerKind, make_kind
from services.batchapi.settings import BatchSettings
from services.batchapi.standin import ALWAYS_FAIL, BatchStandIn, StandInConfig
from services.criticizer.stage import STRATEGIES, critique_id
from services.devkit.kafkaio import topic
from services.devkit.processes import wait_until
from services.llm.critic import prompts as critic_prompts
from services.llm.critic.backend import _score
from services.llm.settings import LLMOptions
from services.llm.types import ChatResponse
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.retry import PermanentError
from tests.batchapi.support import (
    LOGIT_TASK_ID,
    TASK_ID,
    TOPICS,
    annotation_of,
    annotations,
    criticized,
    critiques,
    dead_letters,
    expected_dead,
    finished,
    produce,
    produce_annotations,
    settings,
    setup,
    task,
)
from tests.support.kafkaio import Collector

OPTIONS = LLMOptions(provider="openai", model="stand-in-model")
#: A well-formed answer of each verbalized strategy.
ANSWERS = {
    "naive": "[0.250]",
    "cot": "[The text reads like an offer][0.750]",
    "multiple-choice": "[It might be either][4]",
    "devils-advocate": "[The statement ignores the greeting][0.100]",
}


# ------------------------------------------------------------------ the kind


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_a_critique_is_what_the_streaming_criticizer_would_write(name: str) -> None:
    strategy = STRATEGIES[name]
    t = task(critique=strategy)
    annotation = annotation_of("it-1", "win a prize now")
    kind = CriticizerKind(OPTIONS)
    built = kind.build(t, annotation)
    critique = kind.output(t, annotation, ANSWERS[name], CallUsage(100, 20, 0.001), attempt=2)
    assert critique.topic == "critiques" and critique.key == "it-1"
    value = critique.value
    # The streaming criticizer's id, prompt and black-box scoring.
    assert value.critique_id == critique_id(TASK_ID, "it-1") == kind.request_key(t, annotation)
    spec = critic_prompts.spec_of(strategy)
    expected = _score(strategy, spec, ChatResponse(ANSWERS[name], "stand-in-model"))
    assert value.eps == pytest.approx(expected.eps) and value.rationale == expected.rationale
    assert value.multiple_choice_level == (expected.multiple_choice_level or 0)
    assert value.strategy == strategy and value.raw_output == ANSWERS[name]
    blind = annotation_pb2.Annotation()
    blind.CopyFrom(annotation)
    blind.item.ClearField("reference_label")
    reference = critic_prompts.build(
        t,
        blind,
        strategy,
        images=OPTIONS.supports_images,
        max_tokens=built.max_tokens,
        claim_store=OPTIONS.claim_store_url,
        max_text_chars=OPTIONS.max_text_chars,
    )
    assert value.prompt_template_sha256 == reference.template_sha256 == built.prompt.template_sha256
    # The same messages but for the data block's random fence.
    assert _unfenced(built.prompt.messages) == _unfenced(reference.messages)
    # The annotation travels whole; the critic is the annotator's model: self-criticism.
    assert value.annotation == annotation and value.annotation.item.HasField("reference_label")
    assert value.model.model == "stand-in-model" and value.self_criticism
    assert value.attempts == 2 and value.usage.cost_usd == pytest.approx(0.001)


@pytest.mark.parametrize("name", ["naive-logit", "cot-logit", "cot-perplexity"])
def test_logprob_strategies_are_refused_before_anything_is_asked(name: str) -> None:
    t = task(critique=STRATEGIES[name])
    with pytest.raises(PermanentError, match="per-token logprobs"):
        CriticizerKind(OPTIONS).build(t, annotation_of("it-1", "x"))
    with pytest.raises(ValueError, match="cannot go through a batch API"):
        CriticizerKind(OPTIONS, default_strategy=name)


def test_annotation_outside_the_task_or_without_item_is_refused() -> None:
    kind = CriticizerKind(OPTIONS)
    bad = annotation_of("it-1", "x")
    bad.label_index = 7
    with pytest.raises(PermanentError, match="not in the task"):
        kind.build(task(), bad)
    with pytest.raises(PermanentError, match="without item"):
        kind.build(task(), annotation_pb2.Annotation(label_index=0))


def test_each_kind_keeps_its_input_in_the_state_record() -> None:
    annotation = annotation_of("it-1", "x")
    request = batch_pb2.BatchRequest(custom_id="c-1", attempt=1)
    critic = CriticizerKind(OPTIONS)
    critic.store(request, annotation)
    assert not request.HasField("item") and critic.load(request) == annotation
    # The annotator keeps the item in field 3, as state records before `input` did.
    annotator = AnnotatorKind(OPTIONS)
    legacy = batch_pb2.BatchRequest(custom_id="a-1", attempt=1)
    annotator.store(legacy, annotation.item)
    assert not legacy.input and annotator.load(legacy) == annotation.item
    newer = batch_pb2.BatchRequest(input=annotation.item.SerializeToString())
    assert annotator.load(newer) == annotation.item


def test_the_stage_kind_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACT_BATCH_API_KEY", "sk-test")
    monkeypatch.setenv("ACT_BATCH_STAGE_KIND", "criticizer")
    monkeypatch.setenv("ACT_BATCH_DEFAULT_STRATEGY", "devils-advocate")
    s = BatchSettings()
    assert s.stage_kind == "criticizer" and s.group_id == ""
    process = BatchProcess(s, KafkaSettings(topic_prefix="t."))
    assert process.journal.group_id == "act-batch-criticizer"
    assert [t.removeprefix("t.") for t in process.journal.input_topics] == [
        "act.annotations.v1",
        "act.batch.pending.v1",
    ]
    assert process.driver.kind.name == "criticizer"
    monkeypatch.setenv("ACT_BATCH_STAGE_KIND", "reviewer")
    with pytest.raises(ValueError, match="'annotator' or 'criticizer'"):
        BatchSettings()
    monkeypatch.setenv("ACT_BATCH_STAGE_KIND", "annotator")
    with pytest.raises(ValueError, match="not a batch strategy of the annotator"):
        BatchSettings()
    monkeypatch.setenv("ACT_BATCH_DEFAULT_STRATEGY", "cot-logit")
    with pytest.raises(ValueError):
        BatchSettings()
    with pytest.raises(ValueError, match=r"unknown batch stage kind 'reviewer'.*criticizer"):
        make_kind("reviewer", OPTIONS, "cot")


# ------------------------------------------------------------ against Kafka


@pytest.mark.kafka
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_annotations_become_critiques_retries_and_dead_letters(
    kafka_bootstrap: str, kind: str
):
    kafka = await setup(kafka_bootstrap)
    server = BatchStandIn(StandInConfig(error_rate=0.2, expire_rate=0.3, completion_s=0.2))
    await server.start()
    texts = {f"item-{i:03d}": f"message number {i}" for i in range(40)}
    poison = {f"poison-{i}": f"{ALWAYS_FAIL} {i}" for i in range(2)}
    await produce_annotations(kafka, {**texts, **poison})
    collector = Collector(kafka, TOPICS)
    await collector.start()
    process = BatchProcess(settings(kind, server, stage_kind="criticizer"), kafka)
    try:
        await process.start()
        await wait_until(lambda: len(criticized(collector)) == 42, 60, "every annotation done")
        await asyncio.sleep(0.5)  # nothing more may arrive
    finally:
        await process.stop()
        await server.stop()
        await collector.stop()

    done = criticized(collector)
    assert set(done) == set(texts) | set(poison) and set(done.values()) == {1}
    keys = {i: critique_id(TASK_ID, i) for i in [*texts, *poison]}
    for c in critiques(collector):
        item_id = c.annotation.item.item_id
        assert item_id in texts and c.critique_id == keys[item_id]
        assert c.annotation == annotation_of(item_id, texts[item_id])  # travels whole
        assert re.fullmatch(r"\[[^\]]+\]\[0\.\d{3}\]", c.raw_output) and 0 <= c.eps <= 1
        assert c.strategy == common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT and c.rationale
        assert 1 <= c.attempts <= 3 and c.model.model == "stand-in-model"
        # The annotations name OpenAI's stand-in-model: the same model only at OpenAI.
        assert c.model.provider == kind and c.self_criticism == (kind == "openai")
        assert c.usage.cost_usd > 0 and c.prompt_template_sha256
        assert f"{keys[item_id]}-{c.attempts}" in server.submissions
    letters = dead_letters(collector)
    assert {d.item_id for d in letters} == expected_dead(server, keys, 3) >= set(poison)
    assert all(d.stage == "batch-criticizer" and d.attempts == 3 for d in letters)
    for d in letters:  # the dead letter holds the annotation, as the DLQ tools expect
        assert annotation_pb2.Annotation.FromString(d.original_value).item.item_id == d.item_id
    assert len(annotations(collector)) == 42  # the produced ones: the driver wrote none
    assert set(server.submissions.values()) == {1}
    assert any(cid.endswith("-2") for cid in server.submissions)


@pytest.mark.kafka
async def test_a_logprob_task_is_dead_lettered_and_nothing_else_is_lost(kafka_bootstrap: str):
    kafka = await setup(kafka_bootstrap)
    server = BatchStandIn(StandInConfig(completion_s=0.1))
    await server.start()
    fine = {f"ok-{i}": f"hello {i}" for i in range(12)}
    logit = {f"logit-{i}": f"hello {i}" for i in range(5)}
    await produce_annotations(kafka, dict(list(fine.items())[:6]))
    await produce_annotations(kafka, logit, task_id=LOGIT_TASK_ID)
    await produce_annotations(kafka, dict(list(fine.items())[6:]))
    await _produce_raw(kafka, "garbled", b"\xff\xff not an annotation")
    collector = Collector(kafka, TOPICS)
    await collector.start()
    process = BatchProcess(settings("openai", server, stage_kind="criticizer"), kafka)
    try:
        await process.start()
        await wait_until(lambda: len(criticized(collector)) == 18, 30, "every record done")
        await asyncio.sleep(0.5)
    finally:
        await process.stop()
        await server.stop()
        await collector.stop()
    assert {c.annotation.item.item_id for c in critiques(collector)} == set(fine)
    assert set(criticized(collector).values()) == {1}
    letters: dict[str, dlq_pb2.DeadLetter] = {d.item_id: d for d in dead_letters(collector)}
    assert set(letters) == set(logit) | {"garbled"}
    for item_id in logit:
        d = letters[item_id]
        assert d.attempts == 1 and d.error_type == "PermanentError" and d.task_id == LOGIT_TASK_ID
        assert "COT_LOGIT needs per-token logprobs" in d.error_message
        assert (
            d.original_value
            == annotation_of(item_id, logit[item_id], LOGIT_TASK_ID).SerializeToString()
        )
        # Refused at acceptance: never billed.
        assert custom_id(critique_id(LOGIT_TASK_ID, item_id), 1) not in server.submissions
    assert "undecodable" in letters["garbled"].error_message
    assert len(server.submissions) == len(fine)


@pytest.mark.kafka
async def test_annotator_and_criticizer_drivers_side_by_side(kafka_bootstrap: str):
    """Both kinds share batch_pending and batch_state: each takes only its own records,
    also when the criticizer restarts while the annotator has batches open."""
    kafka = await setup(kafka_bootstrap)
    server = BatchStandIn(StandInConfig(error_rate=0.25, completion_s=0.3))
    await server.start()
    texts = {f"item-{i:03d}": f"message number {i}" for i in range(60)}
    await produce(kafka, dict(list(texts.items())[:30]))
    collector = Collector(kafka, TOPICS)
    await collector.start()
    annotator = BatchProcess(settings("anthropic", server, max_requests=10), kafka)
    critic_settings = settings("anthropic", server, stage_kind="criticizer", max_requests=10)
    critic = BatchProcess(critic_settings, kafka)
    successor: BatchProcess | None = None
    try:
        await annotator.start()
        await critic.start()
        await wait_until(lambda: bool(critiques(collector)), 30, "first critiques")
        await produce(kafka, dict(list(texts.items())[30:]))
        await wait_until(lambda: bool(annotator.driver.open), 30, "open annotator batches")
        stopped, critic = await critic.stop(), None
        assert stopped == 0
        successor = BatchProcess(critic_settings, kafka)
        await successor.start()
        assert all(b.state.stage == "criticizer" for b in successor.driver.open.values())

        def all_done() -> bool:
            annotated = {a.item.item_id for a in annotations(collector)}
            return len(finished(collector)) == 60 and set(criticized(collector)) == annotated

        await wait_until(all_done, 60, "every item annotated and criticized")
        await asyncio.sleep(0.5)
    finally:
        await annotator.stop()
        for process in (successor, critic):
            if process is not None:
                await process.stop()
        await server.stop()
        await collector.stop()
    assert set(finished(collector)) == set(texts) and set(finished(collector).values()) == {1}
    annotated = {a.item.item_id for a in annotations(collector)}
    assert set(criticized(collector)) == annotated and set(criticized(collector).values()) == {1}
    by_item = {a.item.item_id: a for a in annotations(collector)}
    for c in critiques(collector):
        assert c.annotation == by_item[c.annotation.item.item_id]
    assert set(server.submissions.values()) == {1}
    # Both kinds retried through the one pending topic.
    attempts = {cid.rsplit("-", 1)[1] for cid in server.submissions}
    assert "2" in attempts
    retried = {c.annotation.item.item_id for c in critiques(collector) if c.attempts > 1}
    assert retried and any(a.attempts > 1 for a in annotations(collector))


def _unfenced(messages: object) -> str:
    return re.sub(r"DATA [0-9a-f]{16}", "DATA <fence>", repr(messages))


async def _produce_raw(kafka: KafkaSettings, key: str, value: bytes) -> None:
    producer = kafka_clients.idempotent_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic(kafka, "annotations"), value, key=key.encode())
    finally:
        await producer.stop()
