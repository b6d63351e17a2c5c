"""The one backend builder: LLM and few-shot backends, and the stage around them."""

from __future__ import annotations

from act.v1 import common_pb2 as C

from services.annotator.settings import AnnotatorSettings
from services.annotator.stage import AnnotatorStage
from services.backends.build import (
    build_backend_stage,
    build_backends,
    fewshot_router_backends,
    llm_backends,
)
from services.backends.settings import BackendSettings
from services.criticizer.settings import CriticizerSettings
from services.criticizer.stage import CriticizerStage
from services.fewshot.routing import FewShotAnnotatorRouter, FewShotCriticRouter
from services.llm.annotator.backend import LLMAnnotatorBackend
from services.llm.critic.backend import LLMCriticBackend
from services.llm.settings import LLMOptions
from services.runtime.config import KafkaSettings


async def test_llm_backends_share_one_client_and_close_it() -> None:
    backends = llm_backends(LLMOptions(base_url="http://127.0.0.1:1/v1", model="m"))
    assert isinstance(backends.annotator, LLMAnnotatorBackend)
    assert isinstance(backends.critic, LLMCriticBackend)
    assert backends.annotator.client is backends.critic.client
    assert backends.provider == "openai" and backends.close is not None
    await backends.close()


def test_fewshot_routers_have_nothing_to_close() -> None:
    backends = fewshot_router_backends("spam-assassin")
    assert isinstance(backends.annotator, FewShotAnnotatorRouter)
    assert isinstance(backends.critic, FewShotCriticRouter)
    assert backends.provider == "local-fewshot" and backends.close is None
    choice = BackendSettings(backend="local-fewshot", fewshot_dataset="")
    assert isinstance(build_backends(choice, LLMOptions()).critic, FewShotCriticRouter)


def test_the_stage_gets_its_role_and_closes_the_client_on_stop() -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    llm = LLMOptions(provider="anthropic", model="claude", api_key="k")
    choice = BackendSettings(backend="llm", fewshot_dataset="")
    critic = build_backend_stage(
        CriticizerStage,
        "critic",
        CriticizerSettings(llm=llm, backend=choice),
        kafka,
        default_strategy=C.CRITIQUE_STRATEGY_NAIVE,
    )
    assert isinstance(critic.backend, LLMCriticBackend) and critic.provider == "anthropic"
    assert critic.default_strategy == C.CRITIQUE_STRATEGY_NAIVE
    assert critic._on_stop[-1] == critic.backend.client.aclose  # after the task registry's stop
    annotator = build_backend_stage(
        AnnotatorStage,
        "annotator",
        AnnotatorSettings(llm=llm, backend=choice),
        kafka,
        default_strategy=C.ANNOTATION_STRATEGY_NAIVE,
    )
    assert isinstance(annotator.backend, LLMAnnotatorBackend)
    assert annotator.default_strategy == C.ANNOTATION_STRATEGY_NAIVE
