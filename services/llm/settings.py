"""Settings of a model endpoint and of the prompts sent to it.

:class:`LLMOptions` is the ``llm`` part of the annotator's and the
criticizer's settings (:mod:`services.backends.settings`), read from that
service's environment prefix, e.g. ``ACT_ANNOTATOR_BASE_URL`` or
``ACT_CRITICIZER_API_KEY``.

Endpoints and keys come only from here, never from a message: a task may name
the model to use (``ModelRef.model``) but not where the service sends its API
key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LLMOptions(BaseSettings):
    """Model endpoint, limits, prices and prompt options of one service."""

    model_config = SettingsConfigDict(extra="ignore")

    provider: Literal["openai", "anthropic"] = Field(
        "openai",
        description="'openai' = any OpenAI-compatible server (OpenAI, vLLM, llama.cpp); "
        "'anthropic' = the Anthropic API.",
    )
    model: str = Field("", description="Default model; a task's ModelRef.model overrides it.")
    base_url: str = Field("", description="Endpoint; empty = the provider's public API.")
    api_key: SecretStr | None = Field(
        None, description="API key; None = the SDK's environment variable, or none for local."
    )
    concurrency: int = Field(
        256, ge=1, description="Requests in flight at once (sized to keep a vLLM server full)."
    )
    timeout_s: float = Field(
        50.0, gt=0, description="Whole-request deadline, per request (re-asks are new requests)."
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    openai_client: Literal["auto", "sdk", "direct"] = Field(
        "auto",
        description="OpenAI-compatible client: 'sdk' (the openai SDK), 'direct' (chat "
        "completions over plain aiohttp, a quarter of the SDK's CPU per request, for "
        "self-hosted servers), 'auto' = direct when base_url is set, else the SDK.",
    )
    http_transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="HTTP transport of the OpenAI SDK: 'aiohttp' (less CPU per request at high "
        "concurrency) or 'httpx' (the SDK default).",
    )
    price_input_per_mtok: float = Field(0.0, ge=0, description="USD per 1M prompt tokens.")
    price_output_per_mtok: float = Field(0.0, ge=0, description="USD per 1M completion tokens.")
    supports_images: bool = Field(
        True, description="Send images as image parts; False renders them as text."
    )
    logprobs: bool = Field(
        True, description="Ask for generated-token logprobs (annotator confidence, white-box)."
    )
    top_logprobs: int = Field(10, ge=1, le=20, description="Alternatives per generated token.")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="Name of the output-length parameter the server expects."
    )
    structured_output: Literal["none", "gbnf", "vllm-regex"] = Field(
        "none",
        description="Constrain decoding to the output format: 'gbnf' (llama.cpp `grammar`), "
        "'vllm-regex' (vLLM `structured_outputs.regex`). Parsing stays strict either way.",
    )
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens_naive: int = Field(16, ge=1, description="Output cap of naive prompts.")
    max_tokens_cot: int = Field(512, ge=16, description="Output cap of chain-of-thought prompts.")
    max_text_chars: int = Field(
        0,
        ge=0,
        description="Cut an item's text to this many characters in prompts, saying so "
        "(0 = whole; for small context windows of local models).",
    )
    reask_attempts: int = Field(
        1, ge=0, le=5, description="Re-asks after unparseable output before dead-lettering."
    )
    anthropic_cache_system: bool = Field(
        True, description="Mark the shared system prompt cacheable (Anthropic prompt caching)."
    )
    claim_store_url: str = Field(
        "",
        description=(
            "The claim-check store images are read from (as ACT_INGEST_CLAIM_STORE_URL: a "
            "directory, file:///path, or s3://bucket/prefix); empty = claim-checked images "
            "are dead-lettered."
        ),
    )


#: LLM client options for one local CPU server (``deploy/llm-server.sh``): one or
#: two requests at a time, grammar-constrained answers, text only, and a timeout
#: for a slow CPU. The demo and the local-model benchmarks use them.
LOCAL_SERVER_OPTIONS: dict[str, object] = {
    "concurrency": 2,
    "timeout_s": 300.0,
    "structured_output": "gbnf",
    "supports_images": False,
}
#: Stage settings that go with them: few records in flight, a handler deadline
#: that fits a CPU model call.
LOCAL_SERVER_STAGE: dict[str, object] = {"max_in_flight": 4, "handler_timeout_s": 600.0}


def check_handler_timeout(handler_timeout_s: float, options: LLMOptions) -> None:
    """Refuse settings whose handler deadline cannot fit the model calls it makes.

    One handler attempt makes up to ``reask_attempts + 1`` requests of up to
    ``timeout_s`` each; a shorter ``handler_timeout_s`` would cut every slow
    item off mid-call and retry it from scratch.
    """
    needed = (options.reask_attempts + 1) * options.timeout_s
    if handler_timeout_s < needed:
        raise ValueError(
            f"handler_timeout_s ({handler_timeout_s:g}) must be at least (reask_attempts + 1) * "
            f"timeout_s ({needed:g})"
        )
