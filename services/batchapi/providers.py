"""The two batch APIs behind one protocol, over the official SDKs.

:class:`OpenAIBatches` uploads a JSONL file (``purpose=batch``) and creates a
``/v1/chat/completions`` batch whose ``metadata`` names our batch id;
:class:`AnthropicBatches` creates a Message Batch. Both poll and read results
per ``custom_id``.

The SDKs' own retries are off (``max_retries=0``): a retried ``create`` after
a lost reply would make a second, billed batch. The driver instead looks a
batch up (:meth:`BatchProvider.find`) before every submission attempt after
the first, so a batch that reached the provider is adopted, never sent again.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

import httpx2
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from services.backend_api.protocols import CallUsage
from services.llm.openai_client import chat_body, read_chat_completion
from services.llm.prompting import Prompt
from services.llm.settings import LLMOptions
from services.llm.types import ChatRequest, ImagePart, Message, TextPart

#: The OpenAI batch metadata key that carries our batch id.
METADATA_KEY = "act_batch_id"
#: The endpoint every OpenAI batch request goes to.
ENDPOINT: Final = "/v1/chat/completions"

Outcome = Literal["succeeded", "errored", "expired"]


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One request of a batch in the provider's shape (``body``: chat body or params)."""

    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """Where a submitted batch stands."""

    ended: bool
    status: str


@dataclass(frozen=True, slots=True)
class RequestResult:
    """The provider's answer to one request (``text``/``usage`` when it succeeded)."""

    custom_id: str
    outcome: Outcome
    text: str = ""
    usage: CallUsage = field(default_factory=CallUsage)
    error: str = ""


class BatchProvider(Protocol):
    """What the driver needs of a batch API."""

    #: "openai" or "anthropic" (metrics label, BatchState.provider).
    name: str

    def body(
        self, prompt: Prompt, model: str, max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        """The request body (OpenAI) or params (Anthropic) of one prompt."""
        ...

    async def submit(self, batch_id: str, requests: Sequence[ProviderRequest]) -> str:
        """Create the batch; its remote id."""
        ...

    async def find(
        self, batch_id: str, formed_at: float, count: int, claimed: Collection[str]
    ) -> str | None:
        """The remote id of a batch of ours that may have been created, or None."""
        ...

    async def poll(self, remote_id: str) -> RemoteStatus:
        """The batch's status now."""
        ...

    async def results(self, remote_id: str) -> list[RequestResult]:
        """Every request's result of an ended batch."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...


def _timeout(options: LLMOptions) -> httpx2.Timeout:
    return httpx2.Timeout(options.timeout_s, connect=options.connect_timeout_s)


class OpenAIBatches:
    """:class:`BatchProvider` over the OpenAI Batch API (files + ``/v1/batches``)."""

    name = "openai"

    def __init__(self, options: LLMOptions, *, lookback_s: float = 3600.0) -> None:
        self.options = options
        self.lookback_s = lookback_s
        key = options.api_key.get_secret_value() if options.api_key else None
        self._client = AsyncOpenAI(
            api_key=key or ("sk-no-key-required" if options.base_url else None),
            base_url=options.base_url or None,
            max_retries=0,
            timeout=_timeout(options),
        )

    def body(
        self, prompt: Prompt, model: str, max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        """The chat-completions body the synchronous client would send (no logprobs)."""
        request = ChatRequest(
            messages=prompt.messages, max_tokens=max_tokens, model=model, temperature=temperature
        )
        return chat_body(request, model, self.options, False)

    async def submit(self, batch_id: str, requests: Sequence[ProviderRequest]) -> str:
        """Upload the JSONL input file, then create the batch with our id in its metadata."""
        lines = (
            json.dumps(
                {"custom_id": r.custom_id, "method": "POST", "url": ENDPOINT, "body": r.body}
            )
            for r in requests
        )
        content = ("\n".join(lines) + "\n").encode()
        uploaded = await self._client.files.create(
            file=(f"{batch_id}.jsonl", content, "application/jsonl"), purpose="batch"
        )
        batch = await self._client.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={METADATA_KEY: batch_id},
        )
        return batch.id

    async def find(
        self, batch_id: str, formed_at: float, count: int, claimed: Collection[str]
    ) -> str | None:
        """The batch whose metadata names ``batch_id`` (exact: the metadata is ours).

        Batches are listed newest first; the search stops at batches created
        well before ours was formed (``lookback_s``).
        """
        async for batch in self._client.batches.list(limit=100):
            if (batch.metadata or {}).get(METADATA_KEY) == batch_id:
                return batch.id
            if batch.created_at < formed_at - self.lookback_s:
                break
        return None

    async def poll(self, remote_id: str) -> RemoteStatus:
        """Ended once completed, expired, failed or cancelled."""
        batch = await self._client.batches.retrieve(remote_id)
        ended = batch.status in ("completed", "expired", "failed", "cancelled")
        return RemoteStatus(ended=ended, status=batch.status)

    async def results(self, remote_id: str) -> list[RequestResult]:
        """Read the output file (successes) and the error file (failures, expiries)."""
        batch = await self._client.batches.retrieve(remote_id)
        results: list[RequestResult] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._client.files.content(file_id)
            for raw in content.content.splitlines():
                if raw.strip():
                    results.append(_openai_line(json.loads(raw), self.options.model))
        return results

    async def aclose(self) -> None:
        """Close the SDK client."""
        await self._client.close()


def _openai_line(line: dict[str, Any], model: str) -> RequestResult:
    custom_id = str(line.get("custom_id", ""))
    error = line.get("error") or {}
    if error.get("code") == "batch_expired":
        return RequestResult(custom_id, "expired", error="batch expired before the request ran")
    response = line.get("response") or {}
    status = int(response.get("status_code") or 0)
    if status != 200:
        return RequestResult(custom_id, "errored", error=f"request failed with status {status}")
    try:
        reply = read_chat_completion(response.get("body"), model)
    except Exception as exc:  # MalformedResponseError: the line is unreadable
        return RequestResult(custom_id, "errored", error=f"malformed result ({exc})")
    return RequestResult(custom_id, "succeeded", reply.text, reply.usage)


def _anthropic_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart) and part.text:
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            source: dict[str, Any] = (
                {"type": "url", "url": part.url}
                if part.url
                else {
                    "type": "base64",
                    "media_type": part.mime_type,
                    "data": base64.b64encode(part.data).decode("ascii"),
                }
            )
            blocks.append({"type": "image", "source": source})
    return blocks


class AnthropicBatches:
    """:class:`BatchProvider` over Anthropic Message Batches.

    Message Batches carry no metadata, so :meth:`find` matches an unclaimed
    batch created at or after our batch was formed (less ``skew_s`` of clock
    difference) with the same number of requests. The residual risk: a batch
    of the same size created by someone else with the same key in that window
    would be adopted; the driver then finds none of our custom_ids in its
    results and retries them as expired (a second bill for those requests,
    never a lost or doubled annotation).
    """

    name = "anthropic"

    def __init__(self, options: LLMOptions, *, skew_s: float = 2.0) -> None:
        self.options = options
        self.skew_s = skew_s
        self._client = AsyncAnthropic(
            api_key=options.api_key.get_secret_value() if options.api_key else "no-key",
            base_url=options.base_url or None,
            max_retries=0,
            timeout=_timeout(options),
        )

    def body(
        self, prompt: Prompt, model: str, max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        """Messages API params: system blocks apart, the rest as messages."""
        system: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for m in prompt.messages:
            if m.role == "system":
                system.extend(_anthropic_blocks(m))
            else:
                messages.append({"role": m.role, "content": _anthropic_blocks(m)})
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "messages": messages,
            "temperature": temperature,
        }
        if system:
            params["system"] = system
        return params

    async def submit(self, batch_id: str, requests: Sequence[ProviderRequest]) -> str:
        """Create the Message Batch."""
        batch = await self._client.messages.batches.create(
            requests=[{"custom_id": r.custom_id, "params": r.body} for r in requests]  # type: ignore[typeddict-item]
        )
        return batch.id

    async def find(
        self, batch_id: str, formed_at: float, count: int, claimed: Collection[str]
    ) -> str | None:
        """The oldest unclaimed batch of ``count`` requests created since ``formed_at``."""
        found: str | None = None
        async for batch in self._client.messages.batches.list(limit=100):
            created = _timestamp(batch.created_at)
            if created < formed_at - self.skew_s:
                break  # newest first: the rest are older still
            c = batch.request_counts
            total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
            if total == count and batch.id not in claimed:
                found = batch.id  # keep going: the oldest match is the likeliest ours
        return found

    async def poll(self, remote_id: str) -> RemoteStatus:
        """Ended once ``processing_status`` is ``ended``."""
        batch = await self._client.messages.batches.retrieve(remote_id)
        return RemoteStatus(batch.processing_status == "ended", batch.processing_status)

    async def results(self, remote_id: str) -> list[RequestResult]:
        """Stream the results JSONL."""
        results: list[RequestResult] = []
        async for line in await self._client.messages.batches.results(remote_id):
            result = line.result
            if result.type == "succeeded":
                message = result.message
                text = "".join(
                    getattr(b, "text", "")
                    for b in message.content
                    if getattr(b, "type", "") == "text"
                )
                u = message.usage
                prompt_tokens = (
                    u.input_tokens
                    + (u.cache_read_input_tokens or 0)
                    + (u.cache_creation_input_tokens or 0)
                )
                usage = CallUsage(prompt_tokens=prompt_tokens, completion_tokens=u.output_tokens)
                results.append(RequestResult(line.custom_id, "succeeded", text, usage))
            elif result.type == "errored":
                kind = getattr(getattr(result.error, "error", None), "type", "error")
                results.append(RequestResult(line.custom_id, "errored", error=f"errored ({kind})"))
            else:  # expired, canceled
                results.append(RequestResult(line.custom_id, "expired", error=str(result.type)))
        return results

    async def aclose(self) -> None:
        """Close the SDK client."""
        await self._client.close()


def _timestamp(value: datetime | str | float) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value).timestamp()


def make_provider(options: LLMOptions, *, anthropic_skew_s: float = 2.0) -> BatchProvider:
    """The batch API of ``options.provider``."""
    if options.provider == "anthropic":
        return AnthropicBatches(options, skew_s=anthropic_skew_s)
    return OpenAIBatches(options)
