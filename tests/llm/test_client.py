"""The OpenAI-compatible client against the fault server: one request, faults mapped."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from pydantic import SecretStr

from services.devkit.fault_server import FaultConfig, OpenAIFaultServer
from services.devkit.stack import free_port
from services.llm.base import retry_after_s
from services.llm.factory import make_client
from services.llm.openai_client import (
    DirectOpenAIClient,
    OpenAICompatibleClient,
    message_payload,
)
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ImagePart, Message, TextPart
from services.runtime.retry import PermanentError, RetryableError

SYSTEM = "Reply [label_index].\n0: ham\n1: spam\n"


def request(**kw) -> ChatRequest:
    return ChatRequest(
        messages=(Message.text("system", SYSTEM), Message.text("user", "hello")),
        max_tokens=8,
        **kw,
    )


async def serve(**cfg) -> OpenAIFaultServer:
    server = OpenAIFaultServer(FaultConfig(latency_s=0.01, **cfg))
    await server.start()
    return server


#: Both OpenAI-compatible clients must behave alike (one body, one parser, one error map).
CLIENTS = pytest.mark.parametrize(
    "client_cls", [OpenAICompatibleClient, DirectOpenAIClient], ids=["sdk", "direct"]
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@CLIENTS
async def test_answer_usage_logprobs_and_metrics(client_cls) -> None:
    server = await serve(fault_rate=0.0)
    client = client_cls(
        LLMOptions(
            base_url=server.base_url,
            model="m-ok",
            price_input_per_mtok=2.0,
            price_output_per_mtok=10.0,
        )
    )
    try:
        before = sample("act_llm_requests_total", provider="openai", model="m-ok", outcome="ok")
        response = await client.chat(request(top_logprobs=2))
        assert response.text in ("[0]", "[1]")
        assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens == 3
        assert response.usage.latency_ms >= 10
        expected = (response.usage.prompt_tokens * 2 + 3 * 10) / 1e6
        assert response.usage.cost_usd == pytest.approx(expected)
        assert response.tokens is not None and "".join(t.token for t in response.tokens) == (
            response.text
        )
        assert len(response.tokens[0].top) == 2
        after = sample("act_llm_requests_total", provider="openai", model="m-ok", outcome="ok")
        assert after == before + 1
        assert sample("act_llm_cost_usd_total", provider="openai", model="m-ok") > 0
        no_lp = await client.chat(request())
        assert no_lp.tokens is None
    finally:
        await client.aclose()
        await server.stop()


@pytest.mark.parametrize(
    ("fault", "outcome", "retry_after"),
    [
        ("rate_limit", "rate_limited", 1.0),
        ("server_error", "server_error", None),
        ("hang", "timeout", None),
        ("truncated_json", "malformed", None),
    ],
)
@CLIENTS
async def test_faults_become_retryable_errors(client_cls, fault, outcome, retry_after) -> None:
    server = await serve(fault_rate=1.0, faults=(fault,), hang_s=5.0)
    client = client_cls(LLMOptions(base_url=server.base_url, model="m-f", timeout_s=0.5))
    try:
        before = sample("act_llm_requests_total", provider="openai", model="m-f", outcome=outcome)
        started = time.perf_counter()
        with pytest.raises(RetryableError) as info:
            await client.chat(request())
        assert time.perf_counter() - started < 2.0
        assert info.value.retry_after_s == retry_after
        after = sample("act_llm_requests_total", provider="openai", model="m-f", outcome=outcome)
        assert after == before + 1
        assert server.stats.requests == 1  # the client made no retry of its own
    finally:
        await client.aclose()
        await server.stop()


@CLIENTS
async def test_concurrency_is_bounded(client_cls) -> None:
    server = OpenAIFaultServer(FaultConfig(latency_s=0.2, fault_rate=0.0))
    await server.start()
    client = client_cls(LLMOptions(base_url=server.base_url, model="m", concurrency=4))
    try:
        started = time.perf_counter()
        await asyncio.gather(*(client.chat(request()) for _ in range(8)))
        # 8 requests, 4 at a time, 0.2 s each: two waves.
        assert time.perf_counter() - started >= 0.38
    finally:
        await client.aclose()
        await server.stop()


def test_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert retry_after_s({"Retry-After": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"Retry-After": "Wed, 01 Jan 2025 00:00:07 GMT"}, now) == 7.0
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None
    assert retry_after_s({"Retry-After": "99999"}) == 300.0


def test_image_parts_as_data_urls_and_text_as_string() -> None:
    msg = Message("user", (TextPart("look: "), ImagePart(data=b"\x89PNG", mime_type="image/png")))
    payload = message_payload(msg, with_images=True)
    assert payload["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw=="},
    }
    assert message_payload(Message.text("user", "hi"), True) == {"role": "user", "content": "hi"}
    with pytest.raises(PermanentError):
        message_payload(msg, with_images=False)


def test_api_key_is_secret() -> None:
    options = LLMOptions(api_key=SecretStr("sk-very-secret"), model="m")
    assert "sk-very-secret" not in repr(options) and "sk-very-secret" not in str(options)
    assert "sk-very-secret" not in options.model_dump_json()


def test_factory_picks_the_direct_client_for_self_hosted_servers() -> None:
    local = LLMOptions(base_url="http://127.0.0.1:1/v1", model="m")
    assert isinstance(make_client(local), DirectOpenAIClient)
    assert isinstance(make_client(LLMOptions(model="gpt", api_key=SecretStr("k"))),
                      OpenAICompatibleClient)  # fmt: skip
    forced = local.model_copy(update={"openai_client": "sdk"})
    assert isinstance(make_client(forced), OpenAICompatibleClient)
    with pytest.raises(ValueError, match="base_url"):
        DirectOpenAIClient(LLMOptions(model="m", openai_client="direct"))


async def _raw_server(handler) -> tuple[web.AppRunner, str]:
    """A bare aiohttp server answering chat completions with ``handler``."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_direct_client_sends_the_key_and_maps_rejections_and_garbage() -> None:
    seen: list[str] = []
    replies = iter(
        [
            web.json_response({"error": {"message": "too long"}}, status=400),
            web.Response(body=b"\xff\xfe not json", content_type="application/json"),
            web.json_response({"choices": []}),
        ]
    )

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        body = await request.json()
        assert body["model"] == "m-raw" and "prompt_logprobs" not in body
        return next(replies)

    runner, url = await _raw_server(handler)
    client = DirectOpenAIClient(
        LLMOptions(base_url=url, model="m-raw", api_key=SecretStr("sk-direct"))
    )
    try:
        with pytest.raises(PermanentError, match="rejected"):
            await client.chat(request(top_logprobs=3))
        with pytest.raises(RetryableError, match="malformed"):
            await client.chat(request())
        with pytest.raises(RetryableError, match="no choices"):
            await client.chat(request())
        assert seen == ["Bearer sk-direct"] * 3
    finally:
        await client.aclose()
        await runner.cleanup()


async def test_factory_builds_both_providers() -> None:
    port = free_port()  # nothing listens there
    openai_client = make_client(
        LLMOptions(provider="openai", base_url=f"http://127.0.0.1:{port}/v1", connect_timeout_s=1)
    )
    anthropic_client = make_client(
        LLMOptions(provider="anthropic", api_key=SecretStr("k"), model="claude")
    )
    assert openai_client.provider == "openai" and openai_client.supports_logprobs
    assert anthropic_client.provider == "anthropic" and not anthropic_client.supports_logprobs
    with pytest.raises(RetryableError, match=r"cannot reach|timed out"):
        await openai_client.chat(request(model="m"))
    await openai_client.aclose()
    await anthropic_client.aclose()


@CLIENTS
async def test_rate_limit_pauses_new_requests_until_retry_after(client_cls) -> None:
    server = await serve(fault_rate=1.0, faults=("rate_limit",), retry_after_s=1)
    client = client_cls(LLMOptions(base_url=server.base_url, model="m-rl"))
    try:
        with pytest.raises(RetryableError):
            await client.chat(request())
        started = time.perf_counter()
        with pytest.raises(RetryableError):
            await client.chat(request())
        assert time.perf_counter() - started >= 0.9  # waited out the Retry-After first
    finally:
        await client.aclose()
        await server.stop()
