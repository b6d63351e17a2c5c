"""Few-shot backends chosen per task, as the annotator and criticizer services run them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from act.v1 import annotation_pb2, common_pb2, task_pb2

from services.annotator.__main__ import build_stage as build_annotator
from services.annotator.settings import AnnotatorSettings
from services.criticizer.__main__ import build_stage as build_criticizer
from services.criticizer.settings import CriticizerSettings
from services.fewshot import pair as pair_module
from services.fewshot.pools import builtin_pool
from services.fewshot.routing import FewShotAnnotatorRouter, FewShotCriticRouter
from services.runtime.config import KafkaSettings
from services.runtime.retry import PermanentError


def fashion_task(**ref_params: str) -> task_pb2.Task:
    pool = builtin_pool("fashion-mnist-test")
    ref = common_pb2.ModelRef(provider="local-fewshot", model="default", params=ref_params)
    return task_pb2.Task(
        task_id="fashion-routing",
        modality=common_pb2.MODALITY_IMAGE,
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(pool.label_names)],
        annotator_model=ref,
        critic_model=ref,
    )


async def test_one_fit_per_model_ref_under_concurrent_first_use(monkeypatch) -> None:
    builds: list[str] = []
    original = pair_module.annotator_from_ref

    def counting(ref: common_pb2.ModelRef):
        builds.append(ref.params["dataset"])
        return original(ref)

    monkeypatch.setattr("services.fewshot.routing.annotator_from_ref", counting)
    router = FewShotAnnotatorRouter(default_dataset="fashion-mnist")
    task = fashion_task(per_class="7", seed="3")  # dataset from the service default
    pool = builtin_pool("fashion-mnist-test")
    items = pool.items(np.arange(40), task.task_id)
    results = await asyncio.gather(
        *(router.annotate(task, item, common_pb2.ANNOTATION_STRATEGY_NAIVE) for item in items)
    )
    assert builds == ["fashion-mnist"]  # 40 records at once, one fit
    assert {r.model for r in results} == {"logreg-pixels@k7s3"}
    correct = sum(r.label_index == pool.label_of(i) for i, r in enumerate(results))
    assert correct >= 20  # far above the 10% of chance, with 7 examples per class


async def test_critic_router_uses_the_tasks_critic_and_gives_eps() -> None:
    router = FewShotCriticRouter()
    task = fashion_task(dataset="fashion-mnist", per_class="7")
    pool = builtin_pool("fashion-mnist-test")
    item = pool.items([0], task.task_id)[0]
    truth = pool.label_of(0)
    right = annotation_pb2.Annotation(item=item, label_index=truth)
    wrong = annotation_pb2.Annotation(item=item, label_index=(truth + 5) % 10)
    strategy = common_pb2.CRITIQUE_STRATEGY_NAIVE_LOGIT
    on_right = await router.critique(task, right, strategy)
    on_wrong = await router.critique(task, wrong, strategy)
    assert on_right.model == "logreg-hog@k7s0"  # a different model from the annotator's
    assert 0.0 <= on_right.eps < on_wrong.eps <= 1.0
    assert on_wrong.p_yes == pytest.approx(on_wrong.eps)


async def test_bad_refs_are_permanent_errors_and_not_cached() -> None:
    router = FewShotAnnotatorRouter()
    pool = builtin_pool("fashion-mnist-test")
    item = pool.items([0], "t")[0]
    naive = common_pb2.ANNOTATION_STRATEGY_NAIVE
    with pytest.raises(PermanentError, match="dataset"):
        await router.annotate(fashion_task(), item, naive)  # no dataset, no default
    other = fashion_task(dataset="fashion-mnist")
    other.annotator_model.provider = "openai"
    with pytest.raises(PermanentError, match="provider 'openai'"):
        await router.annotate(other, item, naive)
    unknown = fashion_task(dataset="no-such-pool")
    with pytest.raises(PermanentError, match="cannot build"):
        await router.annotate(unknown, item, naive)
    with pytest.raises(PermanentError, match="cannot build"):
        await router.annotate(unknown, item, naive)  # tried again, not a cached failure


def test_services_select_the_fewshot_backend_from_settings() -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    annotator = build_annotator(
        AnnotatorSettings(backend={"backend": "local-fewshot", "fewshot_dataset": "spam-assassin"}),
        kafka,
    )
    critic = build_criticizer(CriticizerSettings(backend={"backend": "local-fewshot"}), kafka)
    assert isinstance(annotator.backend, FewShotAnnotatorRouter)
    assert isinstance(critic.backend, FewShotCriticRouter)
    assert annotator.provider == critic.provider == "local-fewshot"
    llm = build_annotator(
        AnnotatorSettings(llm={"base_url": "http://127.0.0.1:1/v1", "model": "m"}), kafka
    )
    assert llm.provider == "openai" and not isinstance(llm.backend, FewShotAnnotatorRouter)
