"""The batch stand-in speaks both batch protocols, checked through the official SDKs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx2
import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from services.batchapi.providers import (
    AnthropicBatches,
    BatchProvider,
    OpenAIBatches,
    ProviderRequest,
)
from services.batchapi.standin import ALWAYS_FAIL, BatchStandIn, StandInConfig
from services.llm.settings import LLMOptions

SYSTEM = "Labels (index: name):\n0: ham\n1: spam\n\nReply with [label_index] only."


def _openai_body(text: str) -> dict[str, object]:
    return {
        "model": "m",
        "max_tokens": 8,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
    }


def _anthropic_params(text: str) -> dict[str, object]:
    return {
        "model": "m",
        "max_tokens": 8,
        "system": [{"type": "text", "text": SYSTEM}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


async def _standin(config: StandInConfig) -> AsyncIterator[BatchStandIn]:
    server = BatchStandIn(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def standin() -> AsyncIterator[BatchStandIn]:
    async for server in _standin(StandInConfig(error_rate=0.3, completion_s=0.3)):
        yield server


def _provider(kind: str, server: BatchStandIn) -> BatchProvider:
    if kind == "openai":
        return OpenAIBatches(LLMOptions(model="m", base_url=server.base_url + "/v1"))
    return AnthropicBatches(LLMOptions(provider="anthropic", model="m", base_url=server.base_url))


async def _until_ended(provider: BatchProvider, remote_id: str) -> list[str]:
    seen = []
    for _ in range(100):
        status = await provider.poll(remote_id)
        seen.append(status.status)
        if status.ended:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {remote_id} never ended: {seen[-3:]}")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_submit_poll_results_with_partial_failures(kind: str, standin: BatchStandIn):
    provider = _provider(kind, standin)
    shape = _openai_body if kind == "openai" else _anthropic_params
    requests = [ProviderRequest(f"req-{i}", shape(f"item {i}")) for i in range(40)]
    requests.append(ProviderRequest("req-poison", shape(f"{ALWAYS_FAIL} item")))
    try:
        remote_id = await provider.submit("K1", requests)
        statuses = await _until_ended(provider, remote_id)
        results = {r.custom_id: r for r in await provider.results(remote_id)}
    finally:
        await provider.aclose()
    assert statuses[0] in ("validating", "in_progress")
    assert statuses[-1] in ("completed", "ended")
    assert set(results) == {r.custom_id for r in requests}
    outcomes = [r.outcome for r in results.values()]
    assert 0 < outcomes.count("errored") < 41 and outcomes.count("expired") == 0
    assert results["req-poison"].outcome == "errored"
    for r in results.values():
        if r.outcome == "succeeded":
            assert re.fullmatch(r"\[[01]\]", r.text)
            assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    # Every custom_id was submitted (billed) exactly once.
    assert set(standin.submissions.values()) == {1} and len(standin.submissions) == 41


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_expired_batch_leaves_requests_unprocessed(kind: str):
    async for server in _standin(StandInConfig(expire_rate=1.0, expired_share=0.5, completion_s=0)):
        provider = _provider(kind, server)
        shape = _openai_body if kind == "openai" else _anthropic_params
        try:
            remote_id = await provider.submit(
                "K", [ProviderRequest(f"r{i}", shape(str(i))) for i in range(30)]
            )
            statuses = await _until_ended(provider, remote_id)
            results = await provider.results(remote_id)
        finally:
            await provider.aclose()
        assert statuses[-1] == ("expired" if kind == "openai" else "ended")
        outcomes = [r.outcome for r in results]
        assert len(results) == 30
        assert 0 < outcomes.count("expired") < 30
        assert outcomes.count("succeeded") == 30 - outcomes.count("expired")


async def test_openai_find_by_metadata_and_list_pages(standin: BatchStandIn):
    provider = _provider("openai", standin)
    client = AsyncOpenAI(api_key="k", base_url=standin.base_url + "/v1", max_retries=0)
    try:
        ids = [
            await provider.submit(f"K{i}", [ProviderRequest(f"K{i}-r", _openai_body("x"))])
            for i in range(3)
        ]
        assert await provider.find("K1", 0.0, 1, ()) == ids[1]
        assert await provider.find("K-unknown", 0.0, 1, ()) is None
        first = await client.batches.list(limit=2)
        assert [b.id for b in first.data] == [ids[2], ids[1]] and first.has_more
        rest = await client.batches.list(limit=2, after=ids[1])
        assert [b.id for b in rest.data] == [ids[0]] and not rest.has_more
        batch = await client.batches.retrieve(ids[0])
        assert batch.metadata == {"act_batch_id": "K0"}
        assert batch.endpoint == "/v1/chat/completions"
        uploaded = await client.files.content(batch.input_file_id)
        assert b'"custom_id": "K0-r"' in uploaded.content
    finally:
        await provider.aclose()
        await client.close()


async def test_openai_refuses_duplicate_custom_ids_without_billing(standin: BatchStandIn):
    provider = _provider("openai", standin)
    try:
        remote_id = await provider.submit(
            "K",
            [
                ProviderRequest("same", _openai_body("a")),
                ProviderRequest("same", _openai_body("b")),
            ],
        )
        status = await provider.poll(remote_id)
    finally:
        await provider.aclose()
    assert status.ended and status.status == "failed"
    assert not standin.submissions


async def test_anthropic_find_matches_unclaimed_batch_of_same_size(standin: BatchStandIn):
    provider = _provider("anthropic", standin)
    client = AsyncAnthropic(api_key="k", base_url=standin.base_url, max_retries=0)
    try:
        formed = await asyncio.to_thread(lambda: __import__("time").time())
        one = await provider.submit("A", [ProviderRequest("a1", _anthropic_params("x"))])
        two = await provider.submit(
            "B", [ProviderRequest(f"b{i}", _anthropic_params("y")) for i in range(2)]
        )
        assert await provider.find("B", formed, 2, ()) == two
        assert await provider.find("A", formed, 1, ()) == one
        assert await provider.find("A", formed, 1, {one}) is None
        page = await client.messages.batches.list(limit=1)
        assert [b.id for b in page.data] == [two] and page.has_more
        assert (await client.messages.batches.retrieve(one)).processing_status == "in_progress"
    finally:
        await provider.aclose()
        await client.close()


async def test_stats_endpoint_serves_submission_counts(standin: BatchStandIn):
    provider = _provider("openai", standin)
    try:
        await provider.submit("K", [ProviderRequest("c1", _openai_body("x"))])
    finally:
        await provider.aclose()
    async with httpx2.AsyncClient() as http:
        stats = (await http.get(standin.base_url + "/standin/stats")).json()
    assert stats == {"submissions": {"c1": 1}, "batches": 1}
