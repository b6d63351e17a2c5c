"""The Anthropic client: request shape (system cache, images), usage, error mapping."""

from __future__ import annotations

import json

import httpx2
import pytest
from pydantic import SecretStr

from services.llm.anthropic_client import AnthropicClient
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ImagePart, Message, TextPart
from services.runtime.retry import PermanentError, RetryableError


def client_with(handler) -> AnthropicClient:
    options = LLMOptions(
        provider="anthropic",
        api_key=SecretStr("sk-ant-test"),
        model="claude-test",
        price_input_per_mtok=3.0,
        price_output_per_mtok=15.0,
    )
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return AnthropicClient(options, http_client=http)


REQUEST = ChatRequest(
    messages=(
        Message.text("system", "shared instructions"),
        Message("user", (TextPart("look:"), ImagePart(data=b"\x89PNG", mime_type="image/png"))),
    ),
    max_tokens=20,
    top_logprobs=5,  # ignored: the API has none
)


async def test_request_shape_and_usage() -> None:
    seen = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen["body"] = json.loads(request.content)
        seen["key"] = request.headers.get("x-api-key") or request.headers.get("authorization")
        return httpx2.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": [{"type": "text", "text": "[1]"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 100, "output_tokens": 3, "cache_read_input_tokens": 900},
            },
        )

    client = client_with(handler)
    response = await client.chat(REQUEST)
    await client.aclose()
    body = seen["body"]
    assert seen["key"] in ("sk-ant-test", "Bearer sk-ant-test")
    assert body["system"] == [
        {"type": "text", "text": "shared instructions", "cache_control": {"type": "ephemeral"}}
    ]
    content = body["messages"][0]["content"]
    assert content[1]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}
    assert "logprobs" not in json.dumps(body)
    assert response.text == "[1]" and response.tokens is None
    assert response.usage.prompt_tokens == 1000 and response.usage.completion_tokens == 3
    assert response.usage.cost_usd == pytest.approx((1000 * 3 + 3 * 15) / 1e6)


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"retry-after": "7"}, RetryableError, 7.0),
        (529, {}, RetryableError, None),  # overloaded
        (500, {}, RetryableError, None),
        (400, {}, PermanentError, None),
    ],
)
async def test_errors(status, headers, error, retry_after) -> None:
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        return httpx2.Response(
            status,
            headers=headers,
            json={"type": "error", "error": {"type": "x", "message": "nope"}},
        )

    client = client_with(handler)
    with pytest.raises(error) as info:
        await client.chat(REQUEST)
    await client.aclose()
    assert len(calls) == 1  # no SDK retries
    if retry_after is not None:
        assert info.value.retry_after_s == retry_after
