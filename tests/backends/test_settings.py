"""A model stage's settings are parts that read the service's one env prefix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from services.annotator.settings import AnnotatorSettings
from services.backends.settings import BackendSettings, ComposedSettings
from services.criticizer.settings import CriticizerSettings
from services.llm.settings import LLMOptions
from services.runtime.config import StageSettings

SERVICES = [(AnnotatorSettings, "ACT_ANNOTATOR_"), (CriticizerSettings, "ACT_CRITICIZER_")]


@pytest.mark.parametrize(("cls", "prefix"), SERVICES)
def test_the_flat_variable_names_stay_what_operators_set(cls, prefix) -> None:
    flat = (
        set(StageSettings.model_fields)
        | set(LLMOptions.model_fields)
        | set(BackendSettings.model_fields)
        | {"default_strategy"}
    )
    assert cls.env_names() == {prefix + name.upper() for name in flat}


@pytest.mark.parametrize(("cls", "prefix"), SERVICES)
def test_each_variable_lands_in_its_part(monkeypatch, cls, prefix) -> None:
    for name, value in {
        "MAX_IN_FLIGHT": "17",
        "HANDLER_TIMEOUT_S": "400",
        "LOG_LEVEL": "DEBUG",
        "MODEL": "m-env",
        "BASE_URL": "http://127.0.0.1:1/v1",
        "TIMEOUT_S": "30",
        "BACKEND": "local-fewshot",
        "FEWSHOT_DATASET": "spam-assassin",
        "DEFAULT_STRATEGY": "naive",
    }.items():
        monkeypatch.setenv(prefix + name, value)
    monkeypatch.setenv("ACT_OTHER_MODEL", "not-mine")
    settings = cls()
    assert settings.stage.max_in_flight == 17 and settings.stage.handler_timeout_s == 400
    assert settings.stage.log_level == "DEBUG"
    assert settings.llm.model == "m-env" and settings.llm.timeout_s == 30
    assert settings.llm.base_url == "http://127.0.0.1:1/v1"
    assert settings.backend.backend == "local-fewshot"
    assert settings.backend.fewshot_dataset == "spam-assassin"
    assert settings.default_strategy == "naive"
    # A part given as a dict is the environment with the dict on top; an instance is as given.
    assert cls(llm={"model": "m-arg"}).llm.timeout_s == 30
    assert cls(llm={"model": "m-arg"}).llm.model == "m-arg"
    assert cls(llm=LLMOptions(model="x")).llm.timeout_s == 50


@pytest.mark.parametrize(("cls", "prefix"), SERVICES)
def test_the_handler_deadline_must_fit_the_model_calls(monkeypatch, cls, prefix) -> None:
    monkeypatch.setenv(prefix + "TIMEOUT_S", "100")
    with pytest.raises(ValidationError, match="handler_timeout_s"):
        cls()  # (1 re-ask + 1) * 100 s > the default 120 s handler deadline
    monkeypatch.setenv(prefix + "HANDLER_TIMEOUT_S", "200")
    assert cls().stage.handler_timeout_s == 200
    with pytest.raises(ValidationError, match="handler_timeout_s"):
        cls(llm={"reask_attempts": 2})


def test_two_parts_may_not_read_the_same_variable() -> None:
    with pytest.raises(TypeError, match="'provider' is read by both 'llm' and 'other'"):

        class _Clash(ComposedSettings):
            model_config = SettingsConfigDict(env_prefix="ACT_CLASH_")
            llm: LLMOptions
            other: LLMOptions
