"""Build the model backend a stage's settings name: an LLM client or the few-shot pair."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.llm.base import BaseClient
from services.llm.settings import LLMOptions

B = TypeVar("B")


class BackendSettings(BaseSettings):
    """Backend choice, mixed into the annotator's and criticizer's settings."""

    model_config = SettingsConfigDict(extra="ignore")

    backend: Literal["llm", "local-fewshot"] = Field(
        "llm",
        description="Model backend: 'llm' (OpenAI-compatible or Anthropic, see provider) or "
        "'local-fewshot' (the CPU few-shot pair; the task's ModelRef names model and seed).",
    )
    fewshot_dataset: str = Field(
        "",
        description="local-fewshot: labelled pool of the seed (fashion-mnist, spam-assassin) "
        "for tasks whose ModelRef names none.",
    )


@dataclass
class Selected(Generic[B]):
    """A backend, the provider name its outputs carry, and what to close on stop."""

    backend: B
    provider: str
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def select_backend(
    settings: LLMOptions,
    choice: BackendSettings,
    llm: Callable[[BaseClient], B],
    fewshot: Callable[[str], B],
) -> Selected[B]:
    """``llm(client)`` over the client ``settings`` describe, or ``fewshot(dataset)``.

    The LLM client connects lazily; the few-shot models are fit on first use.
    """
    if choice.backend == "local-fewshot":
        from services.fewshot.pair import PROVIDER

        return Selected(fewshot(choice.fewshot_dataset), PROVIDER)
    from services.llm.factory import make_client

    client = make_client(settings)
    return Selected(llm(client), settings.provider, [client.aclose])
