"""A scripted LLMClient for unit tests of the backends."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.backend_api.protocols import CallUsage
from services.llm.types import ChatRequest, ChatResponse, TokenLogprob

_TOKEN = re.compile(r"\[|\]|[A-Za-z]+|\d|\.|\s+|.", re.DOTALL)


def tokens_of(text: str, yes: float = 0.8, logprob: float = -0.1) -> tuple[TokenLogprob, ...]:
    """Tokens of ``text``; at Yes/No, P(yes) = ``yes`` and P(no) = 1 - yes - 0.01."""
    out = []
    for tok in _TOKEN.findall(text):
        if tok.lower() in ("yes", "no"):
            p_no = 1.0 - yes - 0.01
            top = (("Yes", math.log(yes)), ("No", math.log(p_no)), (" yes", math.log(0.01)))
            lp = math.log(yes) if tok.lower() == "yes" else math.log(p_no)
            out.append(TokenLogprob(tok, lp, top))
        else:
            out.append(TokenLogprob(tok, logprob, ((tok, logprob), ("x", -5.0))))
    return tuple(out)


@dataclass
class FakeClient:
    """Answers from a script, one reply per call; records the requests."""

    replies: Sequence[str]
    provider: str = "openai"
    default_model: str = "fake-model"
    supports_logprobs: bool = True
    supports_images: bool = True
    yes: float = 0.8
    logprob: float = -0.1
    requests: list[ChatRequest] = field(default_factory=list)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        text = self.replies[min(len(self.requests), len(self.replies) - 1)]
        self.requests.append(request)
        tokens = (
            tokens_of(text, self.yes, self.logprob)
            if request.top_logprobs and self.supports_logprobs
            else None
        )
        return ChatResponse(
            text=text,
            model=request.model or self.default_model,
            usage=CallUsage(prompt_tokens=100, completion_tokens=5, latency_ms=10.0),
            tokens=tokens,
        )

    async def aclose(self) -> None:
        return None
