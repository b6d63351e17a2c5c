"""The batch driver in-process against Kafka and the stand-in: outputs, retries, DLQ, cost."""

from __future__ import annotations

import asyncio
import re

import pytest
from act.v1 import batch_pb2
from prometheus_client import REGISTRY

from services.annotator.stage import annotation_id
from services.batchapi.app import BatchProcess
from services.batchapi.driver import custom_id
from services.batchapi.settings import BatchSettings
from services.batchapi.standin import ALWAYS_FAIL, ALWAYS_GARBAGE, BatchStandIn, StandInConfig
from services.batchapi.standin_core import REFUSAL
from services.devkit.processes import wait_until
from tests.batchapi.support import (
    TASK_ID,
    TOPICS,
    annotations,
    dead_letters,
    expected_dead,
    finished,
    produce,
    settings,
    setup,
)
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_items_become_annotations_retries_and_dead_letters(kafka_bootstrap: str, kind: str):
    kafka = await setup(kafka_bootstrap)
    server = BatchStandIn(StandInConfig(error_rate=0.2, expire_rate=0.3, completion_s=0.2))
    await server.start()
    texts = {f"item-{i:03d}": f"message number {i}" for i in range(60)}
    poison = {f"poison-{i}": f"{ALWAYS_FAIL} {i}" for i in range(3)}
    await produce(kafka, {**texts, **poison})
    collector = Collector(kafka, TOPICS)
    await collector.start()
    cost_before = _metric("act_batch_cost_usd_total", provider=kind, model="stand-in-model")
    annotated_before = _metric("act_batch_items_total", provider=kind, outcome="annotated")
    process = BatchProcess(settings(kind, server), kafka)
    try:
        await process.start()
        await wait_until(lambda: len(finished(collector)) == 63, 60, "every item finished")
        await asyncio.sleep(0.5)  # nothing more may arrive
    finally:
        await process.stop()
        await server.stop()
        await collector.stop()

    done = finished(collector)
    assert set(done) == set(texts) | set(poison) and set(done.values()) == {1}
    for a in annotations(collector):
        assert a.item.item_id in texts and a.item.reference_label == 1  # the item travels whole
        assert re.fullmatch(r"\[[01]\]", a.raw_output) and a.label_name in ("ham", "spam")
        assert 1 <= a.attempts <= 3 and a.model.model == "stand-in-model"
        assert a.usage.cost_usd > 0 and a.prompt_template_sha256
    letters = dead_letters(collector)
    keys = {i: annotation_id(TASK_ID, i) for i in [*texts, *poison]}
    assert {d.item_id for d in letters} == expected_dead(server, keys, 3) >= set(poison)
    assert all(d.attempts == 3 and d.error_type == "BatchRequestFailed" for d in letters)
    assert all(re.search("status 500|errored|expired", d.error_message) for d in letters)
    assert all(d.stage == "batch-annotator" and d.original_value for d in letters)
    # Each attempt has its own custom_id, billed once; retries took later attempts.
    assert set(server.submissions.values()) == {1}
    assert any(cid.endswith("-2") for cid in server.submissions)
    for pid in poison:
        key = annotation_id(TASK_ID, pid)
        assert {custom_id(key, n) for n in (1, 2, 3)} <= set(server.submissions)
        assert custom_id(key, 4) not in server.submissions
    # Cost per item, with the batch discount, is on the metrics.
    cost = _metric("act_batch_cost_usd_total", provider=kind, model="stand-in-model") - cost_before
    items = _metric("act_batch_items_total", provider=kind, outcome="annotated") - annotated_before
    assert items == len(annotations(collector)) > 40
    expected = sum(a.usage.cost_usd for a in annotations(collector))
    assert cost == pytest.approx(expected)
    one = annotations(collector)[0].usage
    assert one.cost_usd == pytest.approx(
        (one.prompt_tokens * 2.0 + one.completion_tokens * 8.0) / 1e6 * 0.5
    )
    assert _metric("act_batch_requests_submitted_total", provider=kind) >= 63 + 3 * 2


def test_custom_id_is_unique_per_attempt() -> None:
    assert custom_id("abc", 1) != custom_id("abc", 2)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", custom_id("0" * 32, 12))
    assert batch_pb2.BatchState().phase == batch_pb2.BATCH_PHASE_UNSPECIFIED


async def test_a_second_driver_fences_the_first_and_items_still_end_once(kafka_bootstrap: str):
    kafka = await setup(kafka_bootstrap)
    server = BatchStandIn(StandInConfig(completion_s=0.3))
    await server.start()
    first_half = {f"a-{i:03d}": f"first {i}" for i in range(40)}
    second_half = {f"b-{i:03d}": f"second {i}" for i in range(40)}
    await produce(kafka, first_half)
    collector = Collector(kafka, TOPICS)
    await collector.start()
    zombie = BatchProcess(settings("openai", server), kafka)
    successor = BatchProcess(settings("openai", server), kafka)  # same group: same txn id
    try:
        await zombie.start()
        await wait_until(lambda: bool(annotations(collector)), 30, "first annotations")
        await successor.start()  # fences the zombie's transactional id
        await produce(kafka, second_half)
        await wait_until(lambda: len(finished(collector)) == 80, 60, "every item finished")
        await asyncio.sleep(0.5)
        zombie_run = zombie._run
        assert zombie_run is not None
        await wait_until(zombie_run.done, 30, "the zombie to fail on its next commit")
    finally:
        zombie_code = await zombie.stop()
        assert await successor.stop() == 0
        await server.stop()
        await collector.stop()
    assert zombie_code == 1  # fenced: it exits, the orchestrator would restart it
    done = finished(collector)
    assert set(done) == set(first_half) | set(second_half) and set(done.values()) == {1}
    assert set(server.submissions.values()) == {1}


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ACT_BATCH_PROVIDER": "anthropic",
        "ACT_BATCH_API_KEY": "sk-ant-secret",
        "ACT_BATCH_MODEL": "claude-x",
        "ACT_BATCH_GRPC_PORT": "50123",
        "ACT_BATCH_MAX_REQUESTS": "5000",
        "ACT_BATCH_DISCOUNT": "0.5",
        "ACT_BATCH_PRICE_INPUT_PER_MTOK": "3",
    }.items():
        monkeypatch.setenv(name, value)
    s = BatchSettings()
    assert s.llm.provider == "anthropic" and s.llm.model == "claude-x"
    assert s.llm.price_input_per_mtok == 3.0 and s.service.grpc_port == 50123
    assert s.max_requests == 5000 and s.discount == 0.5
    assert s.llm.api_key is not None and s.llm.api_key.get_secret_value() == "sk-ant-secret"
    assert "sk-ant-secret" not in repr(s)
    monkeypatch.setenv("ACT_BATCH_MAX_REQUESTS", "50001")  # above the providers' batch limit
    with pytest.raises(ValueError):
        BatchSettings()


async def test_unparseable_answers_are_retried_then_dead_lettered_with_the_output(
    kafka_bootstrap: str,
):
    kafka = await setup(kafka_bootstrap)
    server = BatchStandIn(StandInConfig(completion_s=0.1))
    await server.start()
    await produce(kafka, {"fine": "hello there", "garbage": f"{ALWAYS_GARBAGE} please"})
    collector = Collector(kafka, TOPICS)
    await collector.start()
    process = BatchProcess(settings("openai", server, max_attempts=2), kafka)
    try:
        await process.start()
        await wait_until(lambda: len(finished(collector)) == 2, 30, "both items finished")
    finally:
        await process.stop()
        await server.stop()
        await collector.stop()
    assert [a.item.item_id for a in annotations(collector)] == ["fine"]
    (letter,) = dead_letters(collector)
    assert letter.item_id == "garbage" and letter.attempts == 2
    assert "unparseable" in letter.error_message and letter.raw_model_output == REFUSAL
    key = annotation_id(TASK_ID, "garbage")
    assert {custom_id(key, 1), custom_id(key, 2)} <= set(server.submissions)
