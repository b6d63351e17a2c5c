"""Build the model client a service's settings describe."""

from __future__ import annotations

from services.llm.base import BaseClient
from services.llm.settings import LLMOptions


def make_client(options: LLMOptions) -> BaseClient:
    """An OpenAI-compatible or Anthropic client for these options."""
    if options.provider == "anthropic":
        from services.llm.anthropic_client import AnthropicClient

        return AnthropicClient(options)
    from services.llm.openai_client import OpenAICompatibleClient

    return OpenAICompatibleClient(options)
