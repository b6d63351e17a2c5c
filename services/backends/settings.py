"""Settings of a model stage, by composition: parts that share one env prefix.

The annotator's and the criticizer's settings are each made of three parts,
declared once in :class:`ModelStageSettings`, plus the service's own fields::

    stage: StageSettings        # runner knobs, ports, log level -> the runtime
    llm: LLMOptions             # endpoint, limits, prompt options -> the clients
    backend: BackendSettings    # llm or local-fewshot -> services.backends.build

    class AnnotatorSettings(ModelStageSettings):
        model_config = SettingsConfigDict(env_prefix="ACT_ANNOTATOR_", extra="ignore")
        default_strategy: ...   # the service's own fields

Operators keep the flat environment names they always had: every part reads the
service's one prefix, so ``ACT_ANNOTATOR_MAX_IN_FLIGHT`` is
``settings.stage.max_in_flight``, ``ACT_ANNOTATOR_BASE_URL`` is
``settings.llm.base_url``, ``ACT_ANNOTATOR_BACKEND`` is
``settings.backend.backend`` and ``ACT_ANNOTATOR_DEFAULT_STRATEGY`` is
``settings.default_strategy``. No two parts may declare the same field (one
variable, one meaning): the class refuses to be defined otherwise.

How: :class:`ComposedSettings` is a ``BaseSettings`` whose environment source
reads only its own plain fields, and whose "before" validator builds each part
that is not given as an instance with pydantic-settings' per-instance prefix,
``Part(_env_prefix=<the class's env_prefix>)``; a part given as a dict is read
the same way with the dict's values on top. So::

    AnnotatorSettings()                                   # everything from ACT_ANNOTATOR_*
    AnnotatorSettings(llm={"model": "m"})                 # the environment, model overridden
    AnnotatorSettings(backend=BackendSettings(backend="local-fewshot"))  # a part as given

Cross-field rules (the handler deadline against the LLM deadline) are "after"
validators of the composed class, where every part is known.

Who gets what: the runtime (``run_stage_main``, ``StageRunner``) receives
``settings.stage``, the model clients ``settings.llm``, the backend builder
``settings.backend`` and ``settings.llm``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.llm.settings import LLMOptions, check_handler_timeout
from services.runtime.config import StageSettings


class BackendSettings(BaseSettings):
    """Which model backend a stage runs (a part of the annotator's and criticizer's settings)."""

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


def part_type(field: FieldInfo) -> type[BaseSettings] | None:
    """The settings class of a part field, or None for a plain field."""
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
        return annotation
    return None


class _OwnFieldsFromEnv(EnvSettingsSource):
    """The environment, for a composed class's plain fields only.

    A part's name can be a variable of another part (``ACT_ANNOTATOR_BACKEND``
    is ``backend.backend``), so the parts are never read as whole values.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if part_type(field) is not None:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class ComposedSettings(BaseSettings):
    """Base of settings made of parts that all read this class's ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a class where two parts (or a part and a plain field) share a variable."""
        super().__pydantic_init_subclass__(**kwargs)
        seen: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            part = part_type(field)
            for variable in part.model_fields if part is not None else (name,):
                if variable in seen:
                    raise TypeError(
                        f"{cls.__name__}: {variable!r} is read by both {seen[variable]!r} "
                        f"and {name!r}"
                    )
                seen[variable] = name

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment (for the plain fields; parts read their own)."""
        return (init_settings, _OwnFieldsFromEnv(settings_cls))

    @model_validator(mode="before")
    @classmethod
    def _read_parts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        prefix = str(cls.model_config.get("env_prefix", ""))
        values = dict(data)
        for name, field in cls.model_fields.items():
            part = part_type(field)
            if part is None:
                continue
            given = values.get(name)
            if given is None:
                values[name] = part(_env_prefix=prefix)
            elif isinstance(given, dict):
                values[name] = part(_env_prefix=prefix, **given)
        return values

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable the class reads (its plain fields' and its parts')."""
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        names: set[str] = set()
        for name, field in cls.model_fields.items():
            part = part_type(field)
            fields = part.model_fields if part is not None else {name: field}
            names.update(prefix + n.upper() for n in fields)
        return names


class ModelStageSettings(ComposedSettings):
    """The parts every model stage's settings have, and the rule that ties two of them.

    A subclass sets its ``env_prefix`` and adds its own fields.
    """

    stage: StageSettings
    llm: LLMOptions
    backend: BackendSettings

    @model_validator(mode="after")
    def _deadlines_fit(self) -> Self:
        check_handler_timeout(self.stage.handler_timeout_s, self.llm)
        return self
