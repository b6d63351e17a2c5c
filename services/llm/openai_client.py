"""Client of any OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import httpx2
import openai
from openai import AsyncOpenAI

from services.backend_api.protocols import CallUsage
from services.llm.base import (
    BaseClient,
    MalformedResponseError,
    classify_sdk_error,
    classify_status,
    log,
    pooled_httpx_client,
)
from services.llm.settings import LLMOptions
from services.llm.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    TextPart,
    TokenLogprob,
)
from services.runtime.retry import PermanentError, RetryableError

#: Placeholder key for local servers that check none (the SDK insists on one).
NO_KEY = "sk-no-key-required"


def message_payload(message: Message, with_images: bool) -> dict[str, Any]:
    """A message in the chat-completions shape.

    Text-only messages are sent as one string: chat templates of local
    servers (llama.cpp) do not all accept a list of content parts.
    """
    text = message.plain_text()
    if text is not None:
        return {"role": message.role, "content": text}
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            if not with_images:
                raise PermanentError("image part for a client configured without images")
            parts.append({"type": "image_url", "image_url": {"url": part.data_url()}})
    return {"role": message.role, "content": parts}


def chat_body(
    request: ChatRequest, model: str, options: LLMOptions, with_logprobs: bool
) -> dict[str, Any]:
    """The JSON body of a ``POST /chat/completions`` for this request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_payload(m, options.supports_images) for m in request.messages],
        "temperature": request.temperature,
        options.max_tokens_param: request.max_tokens,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.top_logprobs > 0 and with_logprobs:
        # Generated tokens only: never `prompt_logprobs`/`echo` (vLLM then
        # skips its prefix cache and the shared instructions are recomputed).
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    if options.structured_output == "gbnf" and request.grammar:
        body["grammar"] = request.grammar  # llama.cpp server
    elif options.structured_output == "vllm-regex" and request.regex:
        body["structured_outputs"] = {"regex": request.regex}  # vLLM
    return body


class OpenAICompatibleClient(BaseClient):
    """:class:`~services.llm.types.LLMClient` over the ``openai`` SDK."""

    provider = "openai"

    def __init__(
        self, options: LLMOptions, *, http_client: httpx2.AsyncClient | None = None
    ) -> None:
        super().__init__(options)
        key = options.api_key.get_secret_value() if options.api_key else None
        if key is None and options.base_url:
            key = NO_KEY  # self-hosted: the SDK wants a key even where the server checks none
        self._client = AsyncOpenAI(
            api_key=key,
            base_url=options.base_url or None,
            # One request per call: the runtime owns retries (see services.llm).
            max_retries=0,
            timeout=httpx2.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            http_client=http_client or _http_client(options),
        )

    async def _send(self, request: ChatRequest, model: str) -> ChatResponse:
        body = chat_body(request, model, self.options, self.supports_logprobs)
        # The SDK's own client (auth, base URL, timeouts, typed errors), but its
        # generic `post`: `chat.completions.create` first walks every parameter
        # through its TypedDict annotations and builds a pydantic model of the
        # reply, about half of our CPU per request at 256 in flight. The body
        # is already in wire form, and the reply is read below.
        data = await self._client.post("/chat/completions", cast_to=object, body=body)
        return read_chat_completion(data, model)

    def _classify(self, exc: Exception) -> tuple[str, Exception]:
        return classify_sdk_error(exc, openai)

    async def aclose(self) -> None:
        """Close the SDK client and its connections."""
        await self._client.close()


class DirectOpenAIClient(BaseClient):
    """:class:`~services.llm.types.LLMClient` speaking chat completions over plain aiohttp.

    For self-hosted servers (vLLM, llama.cpp) at high concurrency. The SDK
    builds a typed options model, parses the URL three times and deep-copies
    defaults on every call: about 1.2 ms of CPU per request, where this client
    spends about 0.3 ms. At 256 requests in flight that is the difference
    between one stage process keeping a vLLM server full and not (the same
    choice vLLM's own benchmark client makes). Body, reply parsing and the
    error mapping are those of :class:`OpenAICompatibleClient`; the hosted
    OpenAI API keeps the SDK (``openai_client="auto"``).
    """

    provider = "openai"

    def __init__(self, options: LLMOptions) -> None:
        super().__init__(options)
        if not options.base_url:
            raise ValueError("the direct OpenAI-compatible client needs base_url")
        self._url = options.base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if options.api_key is not None:
            self._headers["Authorization"] = f"Bearer {options.api_key.get_secret_value()}"
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the loop it was made in.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.options.concurrency),
                # BaseClient.chat bounds the whole request; this bounds connecting.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.options.connect_timeout_s
                ),
                raise_for_status=False,
            )
        return self._session

    async def _send(self, request: ChatRequest, model: str) -> ChatResponse:
        body = json.dumps(chat_body(request, model, self.options, self.supports_logprobs))
        async with self._open().post(self._url, data=body, headers=self._headers) as reply:
            raw = await reply.read()
            if reply.status >= 400:
                raise _StatusError(reply.status, dict(reply.headers))
        try:
            data = json.loads(raw)
        except ValueError:  # JSONDecodeError and bad UTF-8 alike
            raise MalformedResponseError("body is not JSON") from None
        return read_chat_completion(data, model)

    def _classify(self, exc: Exception) -> tuple[str, Exception]:
        if isinstance(exc, _StatusError):
            return classify_status(exc.status, exc.headers)
        if isinstance(exc, TimeoutError):  # aiohttp's connect timeout is one too
            return "timeout", RetryableError("model request timed out")
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
            return "malformed", RetryableError(f"malformed model response ({type(exc).__name__})")
        if isinstance(exc, aiohttp.ClientError | OSError):
            return "connection", RetryableError("cannot reach the model server")
        return "error", RetryableError(f"model call failed ({type(exc).__name__})")

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class _StatusError(Exception):
    """An HTTP error status from the server (mapped by ``classify_status``)."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers


def _http_client(options: LLMOptions) -> httpx2.AsyncClient:
    """The SDK's transport, with a keep-alive connection for every concurrency slot.

    ``aiohttp`` (the SDK's optional transport) costs about a third of the CPU
    per request of httpx's pool, whose connection scan grows with the pool
    size.
    """
    if options.http_transport == "aiohttp":
        try:
            import aiohttp  # noqa: F401  (the SDK's aiohttp transport needs it)
        except ImportError:
            log.warning("aiohttp_missing_using_httpx")
        else:
            return openai.DefaultAioHttpClient(
                limits=httpx2.Limits(
                    max_connections=options.concurrency,
                    max_keepalive_connections=options.concurrency,
                ),
                timeout=httpx2.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            )
    return pooled_httpx_client(options)


def read_chat_completion(data: Any, model: str) -> ChatResponse:
    """Read a chat-completion JSON body, or raise MalformedResponseError."""
    if not isinstance(data, dict):
        raise MalformedResponseError("body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponseError("no choices")
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise MalformedResponseError("no message content")
    tokens: tuple[TokenLogprob, ...] | None = None
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if content:
        try:
            tokens = tuple(
                TokenLogprob(
                    token=str(t["token"]),
                    logprob=float(t["logprob"]),
                    top=tuple(
                        (str(a["token"]), float(a["logprob"])) for a in t.get("top_logprobs") or ()
                    ),
                )
                for t in content
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MalformedResponseError("unreadable logprobs") from None
    raw_usage = data.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    return ChatResponse(
        text=text,
        model=model,  # as requested: servers may answer with a file path
        usage=CallUsage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
        finish_reason=str(choice.get("finish_reason") or ""),
        tokens=tokens,
    )
