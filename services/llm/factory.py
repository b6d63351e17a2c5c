"""Build the model client a service's settings describe."""

from __future__ import annotations

from services.llm.base import BaseClient
from services.llm.settings import LLMOptions


def make_client(options: LLMOptions) -> BaseClient:
    """An Anthropic client, or an OpenAI-compatible one (SDK or direct, see ``openai_client``)."""
    if options.provider == "anthropic":
        from services.llm.anthropic_client import AnthropicClient

        return AnthropicClient(options)
    from services.llm.openai_client import DirectOpenAIClient, OpenAICompatibleClient

    direct = options.openai_client == "direct" or (
        options.openai_client == "auto" and bool(options.base_url)
    )
    return DirectOpenAIClient(options) if direct else OpenAICompatibleClient(options)
