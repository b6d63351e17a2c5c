"""Client of the Anthropic Messages API (black-box: no token log-probabilities)."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from services.backend_api.protocols import CallUsage
from services.llm.base import (
    BaseClient,
    MalformedResponseError,
    classify_sdk_error,
    pooled_httpx_client,
)
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ChatResponse, ImagePart, Message, TextPart
from services.runtime.retry import PermanentError


def _parts(message: Message, with_images: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            if not with_images:
                raise PermanentError("image part for a client configured without images")
            if part.url:
                blocks.append({"type": "image", "source": {"type": "url", "url": part.url}})
            else:
                blocks.append(
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": part.mime_type,
                            "data": base64.b64encode(part.data).decode("ascii"),
                        },
                    }
                )
    return blocks


class AnthropicClient(BaseClient):
    """:class:`~services.llm.types.LLMClient` over the ``anthropic`` SDK.

    The API returns no log-probabilities, so white-box strategies cannot run on
    it (``supports_logprobs`` is always False). The system prompt (the task's
    shared instructions) is marked cacheable when ``anthropic_cache_system``.
    """

    provider = "anthropic"

    def __init__(
        self, options: LLMOptions, *, http_client: httpx2.AsyncClient | None = None
    ) -> None:
        super().__init__(options)
        self.supports_logprobs = False
        self._client = AsyncAnthropic(
            api_key=options.api_key.get_secret_value() if options.api_key else None,
            base_url=options.base_url or None,
            max_retries=0,  # the runtime owns retries (see services.llm)
            timeout=httpx2.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            http_client=http_client or pooled_httpx_client(options),
        )

    async def _send(self, request: ChatRequest, model: str) -> ChatResponse:
        system: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for m in request.messages:
            if m.role == "system":
                system.extend(_parts(m, False))
            else:
                messages.append({"role": m.role, "content": _parts(m, self.supports_images)})
        if system and self.options.anthropic_cache_system:
            system[-1] = {**system[-1], "cache_control": {"type": "ephemeral"}}
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if system:
            kwargs["system"] = system
        if request.stop:
            kwargs["stop_sequences"] = list(request.stop)
        reply = await self._client.messages.create(**kwargs)
        content = getattr(reply, "content", None)
        if content is None:
            raise MalformedResponseError("no content")
        text = "".join(
            getattr(block, "text", "") for block in content if getattr(block, "type", "") == "text"
        )
        usage = getattr(reply, "usage", None)
        prompt_tokens = sum(
            int(getattr(usage, name, 0) or 0)
            for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        )
        return ChatResponse(
            text=text,
            model=model,
            usage=CallUsage(
                prompt_tokens=prompt_tokens,
                completion_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            ),
            finish_reason=str(getattr(reply, "stop_reason", "") or ""),
        )

    def _classify(self, exc: Exception) -> tuple[str, Exception]:
        return classify_sdk_error(exc, anthropic)

    async def aclose(self) -> None:
        """Close the SDK client and its connections."""
        await self._client.close()
