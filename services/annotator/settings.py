"""Settings of the annotator service, read from ``ACT_ANNOTATOR_*``.

The ``stage``, ``llm`` and ``backend`` parts come from
:class:`~services.backends.settings.ModelStageSettings` and keep the flat
variable names (``ACT_ANNOTATOR_MAX_IN_FLIGHT`` is ``stage.max_in_flight``,
``ACT_ANNOTATOR_BASE_URL`` is ``llm.base_url``, ``ACT_ANNOTATOR_BACKEND`` is
``backend.backend``); :mod:`services.backends.settings` says how.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.backends.settings import ModelStageSettings

ENV_PREFIX = "ACT_ANNOTATOR_"


class AnnotatorSettings(ModelStageSettings):
    """The annotator's parts (``stage``, ``llm``, ``backend``) and its default strategy."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    default_strategy: Literal["naive", "cot"] = Field(
        "cot", description="Strategy for tasks that leave annotation_strategy unspecified."
    )
