"""Build the annotator's or criticizer's stage around the backend its settings name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.llm.base import BaseClient
from services.llm.settings import LLMOptions
from services.runtime.config import KafkaSettings
from services.runtime.tasks import TaskRegistry

if TYPE_CHECKING:
    from services.models.stage import ModelStage


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


ST = TypeVar("ST", bound="ModelStage[Any, Any, Any]")


def build_model_stage(
    stage: type[ST],
    settings: LLMOptions,
    choice: BackendSettings,
    kafka: KafkaSettings,
    *,
    llm: Callable[[BaseClient], object],
    fewshot: Callable[[str], object],
    default_strategy: int,
) -> ST:
    """The annotator's or criticizer's stage with the backend ``choice`` names.

    ``llm(client)`` wraps the client ``settings`` describe (it connects lazily
    and is closed on stop); ``fewshot(dataset)`` builds the few-shot router
    (models fit on first use). Tasks come from the compacted tasks topic.
    """
    closers: list[Callable[[], Awaitable[None]]] = []
    if choice.backend == "local-fewshot":
        from services.fewshot.pair import PROVIDER

        backend, provider = fewshot(choice.fewshot_dataset), PROVIDER
    else:
        from services.llm.factory import make_client

        client = make_client(settings)
        backend, provider = llm(client), settings.provider
        closers.append(client.aclose)
    registry = TaskRegistry(kafka)
    return stage(
        backend,
        registry,
        provider=provider,
        default_strategy=default_strategy,
        on_start=[registry.start],
        on_stop=[registry.stop, *closers],
    )
