"""The main job's ``--backend llm`` path: options, service settings, and model selection
asked of a real local model (SmolLM2 here; the demo itself uses a verified Qwen profile)."""

from __future__ import annotations

import asyncio

import pytest
from act.v1 import common_pb2

from services.annotator.settings import AnnotatorSettings
from services.criticizer.settings import CriticizerSettings
from services.demo import llm
from services.demo import plan as steps
from services.demo.__main__ import parse_args
from services.fewshot.pair import build_pair
from services.fewshot.pools import builtin_pool


def test_options_need_a_text_data_set_and_size_the_run_for_a_cpu() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--dataset", "fashion", "--backend", "llm"])
    config = parse_args(["--dataset", "spam", "--backend", "llm"])
    assert (config.backend, config.items, config.selection_items) == ("llm", 200, 30)
    assert config.llm_profile == "qwen-1.5b"
    assert parse_args(["--dataset", "spam"]).backend == "fewshot"


@pytest.mark.parametrize(("cls", "prefix"), [(AnnotatorSettings, "ACT_ANNOTATOR_"),
                                             (CriticizerSettings, "ACT_CRITICIZER_")])  # fmt: skip
def test_the_model_stages_read_the_demo_llm_environment(
    cls: type, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = steps.DemoConfig(
        dataset=steps.DATASETS["spam"], items=10, out=None, bootstrap="x:1",
        database_url="postgresql://x", backend="llm",
    )  # fmt: skip
    for key, value in llm.stage_env(config, "http://127.0.0.1:1/v1").items():
        monkeypatch.setenv(prefix + key, value)
    settings = cls()
    assert settings.backend.backend == "llm"
    assert settings.llm.base_url == "http://127.0.0.1:1/v1"
    assert settings.llm.model == "qwen-1.5b"
    assert settings.llm.structured_output == "gbnf"
    assert settings.llm.supports_images is False
    assert settings.llm.max_text_chars == 600
    assert settings.stage.max_in_flight == 4


def test_the_llm_task_uses_the_local_server_for_both_roles() -> None:
    config = steps.DemoConfig(
        dataset=steps.DATASETS["spam"], items=10, out=None, bootstrap="x:1",
        database_url="postgresql://x", backend="llm",
    )  # fmt: skip
    pool = builtin_pool("spam-assassin")
    task = steps.make_task(
        config, pool, 0.3, llm_base_url="http://h:1/v1",
        critique=common_pb2.CRITIQUE_STRATEGY_NAIVE_LOGIT,
    )  # fmt: skip
    for ref in (task.annotator_model, task.critic_model):
        assert (ref.provider, ref.model, ref.base_url) == (
            "openai-compatible", "qwen-1.5b", "http://h:1/v1",
        )  # fmt: skip
    assert task.critique_strategy == common_pb2.CRITIQUE_STRATEGY_NAIVE_LOGIT


@pytest.mark.slow
def test_model_selection_asks_the_model_with_each_strategy(smollm2_base_url: str) -> None:
    pool = builtin_pool("spam-assassin")
    pair = build_pair(pool, per_class=8, seed=0)
    config = steps.DemoConfig(
        dataset=steps.DATASETS["spam"], items=10, out=None, bootstrap="x:1",
        database_url="postgresql://x", backend="llm", llm_profile="smollm2",
        llm_max_text_chars=300,
    )  # fmt: skip
    plan = steps.plan_items(pool, 10, 6, pair)
    draft = steps.make_task(config, pool, 0.5, llm_base_url=smollm2_base_url)
    said: list[str] = []
    selection, strategy = asyncio.run(
        llm.select_llm(config, draft, plan, smollm2_base_url, said.append)
    )
    assert [line.split()[2].rstrip(":") for line in said] == list(llm.STRATEGIES)  # both asked
    assert strategy in llm.STRATEGIES.values()
    assert 0.0 <= selection.accuracy <= 1.0 and 0.0 <= selection.critic_abs <= 1.0
    assert selection.recommended_budget >= selection.ideal_budget
    assert "smollm2" in selection.annotator and "self-criticism" in selection.critic
