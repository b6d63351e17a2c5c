"""Settings of the criticizer service, read from ``ACT_CRITICIZER_*``.

Its parts are those of every model stage
(:class:`~services.backends.settings.ModelStageSettings`: ``stage``, ``llm``,
``backend``), under the same flat names operators set, e.g.
``ACT_CRITICIZER_MODEL`` for ``llm.model`` or ``ACT_CRITICIZER_MAX_IN_FLIGHT``
for ``stage.max_in_flight``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.backends.settings import ModelStageSettings

ENV_PREFIX = "ACT_CRITICIZER_"

StrategyName = Literal[
    "naive",
    "cot",
    "multiple-choice",
    "devils-advocate",
    "naive-logit",
    "cot-logit",
    "cot-perplexity",
]


class CriticizerSettings(ModelStageSettings):
    """The criticizer's parts (``stage``, ``llm``, ``backend``) and its default strategy."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    default_strategy: StrategyName = Field(
        "cot", description="Strategy for tasks that leave critique_strategy unspecified."
    )
