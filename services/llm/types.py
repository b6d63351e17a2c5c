"""Provider-neutral request and response types of the model clients."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal, Protocol

from services.backend_api.protocols import CallUsage


@dataclass(frozen=True, slots=True)
class TextPart:
    """A piece of text in a message."""

    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image in a message: inline bytes or a URL the provider fetches itself."""

    data: bytes = b""
    mime_type: str = "image/png"
    url: str = ""

    def data_url(self) -> str:
        """The image as a URL: ``url`` when set, else a ``data:`` URL of the bytes."""
        if self.url:
            return self.url
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``parts`` in order (text and images interleaved)."""

    role: Literal["system", "user", "assistant"]
    parts: tuple[ContentPart, ...]

    @classmethod
    def text(cls, role: Literal["system", "user", "assistant"], text: str) -> Message:
        """A message of one text part."""
        return cls(role, (TextPart(text),))

    def plain_text(self) -> str | None:
        """The message as one string when it holds only text, else None."""
        if all(isinstance(p, TextPart) for p in self.parts):
            return "".join(p.text for p in self.parts if isinstance(p, TextPart))
        return None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion to make.

    ``top_logprobs`` > 0 asks for log-probabilities of the *generated* tokens
    with that many alternatives per position. Prompt log-probabilities are
    never requested: vLLM turns prefix caching off for requests that ask.
    ``grammar`` is a GBNF grammar (llama.cpp) or a regular expression (vLLM)
    that constrains decoding, used only where the client is configured for it.
    """

    messages: tuple[Message, ...]
    max_tokens: int
    model: str = ""  # empty: the client's default model
    temperature: float = 0.0
    top_logprobs: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: str = ""
    regex: str = ""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token, its log-probability and the top alternatives there."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """The result of one chat completion."""

    text: str
    model: str
    usage: CallUsage = field(default_factory=CallUsage)
    finish_reason: str = ""
    #: Generated tokens with log-probabilities; None when the server gave none.
    tokens: tuple[TokenLogprob, ...] | None = None


class LLMClient(Protocol):
    """An async chat client with bounded concurrency, timeouts and metrics.

    ``chat`` makes one HTTP request. Transient failures raise
    :class:`~services.runtime.retry.RetryableError` (with ``retry_after_s``
    when the server said how long to wait); requests the server rejects for
    their content raise :class:`~services.runtime.retry.PermanentError`.
    """

    #: "openai" (any OpenAI-compatible server) or "anthropic".
    provider: str
    #: The model used when a request names none.
    default_model: str
    #: Whether responses can carry token log-probabilities.
    supports_logprobs: bool
    #: Whether image parts are sent to the model (False: text-only model).
    supports_images: bool

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Make one chat completion."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...
