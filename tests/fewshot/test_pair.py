"""The few-shot local pair: seed-only training, quality, eps, and the backend protocols."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.backend_api.protocols import AnnotatorBackend, CriticBackend
from services.core.baselines import random_critic_eps
from services.core.metrics import abs_score, accuracy
from services.fewshot import model as model_module
from services.fewshot.pair import FewShotPair, build_pair
from services.fewshot.pools import LabelledPool, builtin_pool
from services.runtime.retry import PermanentError

K = 10  # small seeds keep these tests fast


@pytest.fixture(scope="module")
def fashion_train() -> LabelledPool:
    return builtin_pool("fashion-mnist")


@pytest.fixture(scope="module")
def fashion_test() -> LabelledPool:
    return builtin_pool("fashion-mnist-test")


@pytest.fixture(scope="module")
def image_pair(fashion_train: LabelledPool) -> FewShotPair:
    return build_pair(fashion_train, per_class=K, seed=0)


def _task(pool: LabelledPool) -> task_pb2.Task:
    return task_pb2.Task(
        task_id="t",
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(pool.label_names)],
        modality=common_pb2.MODALITY_IMAGE
        if pool.modality == "image"
        else common_pb2.MODALITY_TEXT,
    )


def test_pair_fits_on_k_per_class_only(fashion_train: LabelledPool, monkeypatch):
    fits: list[np.ndarray] = []
    original = model_module.FewShotModel.fit_features

    def spy(self, x, labels, n_classes):
        fits.append(np.asarray(labels).copy())
        assert x.shape[0] == len(labels)
        return original(self, x, labels, n_classes)

    monkeypatch.setattr(model_module.FewShotModel, "fit_features", spy)
    pair = build_pair(fashion_train, per_class=K, seed=0)
    assert len(fits) == 2  # annotator and critic, each fit once, on the seed
    for labels in fits:
        assert np.bincount(labels, minlength=10).tolist() == [K] * 10
        assert np.array_equal(labels, pair.selection.labels)
    seed_labels = fashion_train.labels[pair.selection.indices]
    assert np.array_equal(pair.selection.labels, seed_labels)
    assert pair.annotator.model.name != pair.critic.model.name  # cross-criticism


def test_labels_outside_the_seed_change_nothing(
    fashion_train: LabelledPool, fashion_test: LabelledPool, image_pair: FewShotPair
):
    """Scramble every training label the seed selection did not look at: same models."""
    asked: list[int] = []
    pool = fashion_train

    class Recording(LabelledPool):
        def label_of(self, index: int) -> int:
            asked.append(index)
            return LabelledPool.label_of(self, index)

    recorded = Recording(
        pool.name, pool.modality, pool.label_names, pool.ids, pool.labels, pool.texts, pool.images
    )
    build_pair(recorded, per_class=K, seed=0)
    scrambled_labels = pool.labels.copy()
    others = np.setdiff1d(np.arange(len(pool)), asked)
    scrambled_labels[others] = np.random.default_rng(5).permutation(scrambled_labels[others])
    assert (scrambled_labels != pool.labels).mean() > 0.5
    scrambled = LabelledPool(
        pool.name,
        pool.modality,
        pool.label_names,
        pool.ids,
        scrambled_labels,
        pool.texts,
        pool.images,
    )
    other = build_pair(scrambled, per_class=K, seed=0)
    images = fashion_test.images[:300]
    for a, b in ((image_pair.annotator, other.annotator), (image_pair.critic, other.critic)):
        assert np.allclose(a.model.predict_proba(images), b.model.predict_proba(images))


def test_image_pair_quality_and_eps(image_pair: FewShotPair, fashion_test: LabelledPool):
    idx = np.arange(600)
    task = _task(fashion_test)
    items = fashion_test.items(idx, task.task_id)
    human = fashion_test.labels[idx]
    machine = np.array([r.label_index for r in image_pair.annotator.annotate_many(task, items)])
    assert accuracy(machine, human) > 0.55  # chance is 0.10
    eps = image_pair.critic.eps_many(items, machine.tolist())
    assert eps.min() >= 0.0 and eps.max() <= 1.0
    critic = abs_score(machine, human, eps)
    randoms = [abs_score(machine, human, random_critic_eps(len(idx), s)) for s in range(20)]
    assert critic > max(randoms) and critic > 0.6


async def test_backends_implement_the_protocols(image_pair: FewShotPair, fashion_test):
    annotator: AnnotatorBackend = image_pair.annotator
    critic: CriticBackend = image_pair.critic
    task = _task(fashion_test)
    items = fashion_test.items(np.arange(40), task.task_id)
    cot = common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT
    results = await asyncio.gather(*(annotator.annotate(task, it, cot) for it in items))
    batch = image_pair.annotator.annotate_many(task, items)
    assert [r.label_index for r in results] == [r.label_index for r in batch]
    assert image_pair.annotator._scorer.batcher.batches < len(items)  # micro-batched
    first = results[0]
    assert first.model == f"logreg-pixels@k{K}s0" and "P(" in first.rationale
    assert 0.0 < (first.confidence or 0.0) <= 1.0
    annotation = annotation_pb2.Annotation(item=items[0], label_index=first.label_index)
    by_strategy = {
        s: await critic.critique(task, annotation, s)
        for s in (
            common_pb2.CRITIQUE_STRATEGY_NAIVE,
            common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT,
            common_pb2.CRITIQUE_STRATEGY_MULTIPLE_CHOICE,
            common_pb2.CRITIQUE_STRATEGY_COT_LOGIT,
            common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY,
        )
    }
    eps = by_strategy[common_pb2.CRITIQUE_STRATEGY_NAIVE].eps
    assert 0.0 <= eps <= 1.0
    assert all(r.eps == pytest.approx(eps) for r in by_strategy.values())
    assert by_strategy[common_pb2.CRITIQUE_STRATEGY_MULTIPLE_CHOICE].multiple_choice_level == (
        1 + round(4 * eps)
    )
    assert by_strategy[common_pb2.CRITIQUE_STRATEGY_COT_LOGIT].p_yes == pytest.approx(eps)
    assert by_strategy[common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY].priority_score == (
        pytest.approx(2 * eps)
    )
    assert by_strategy[common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT].rationale


async def test_bad_items_fail_permanently_one_by_one(image_pair: FewShotPair, fashion_test):
    task = _task(fashion_test)
    naive = common_pb2.ANNOTATION_STRATEGY_NAIVE
    good = fashion_test.items([0], task.task_id)[0]
    bad = [
        item_pb2.Item(item_id="no-image", text="a caption only"),
        item_pb2.Item(item_id="garbage", image_bytes=b"\x89PNG\r\n\x1a\nnot really"),
        item_pb2.Item(item_id="uri", image_uri="s3://bucket/key.png"),
    ]
    results = await asyncio.gather(
        *(image_pair.annotator.annotate(task, it, naive) for it in [good, *bad]),
        return_exceptions=True,
    )
    assert not isinstance(results[0], BaseException)
    assert all(isinstance(r, PermanentError) for r in results[1:])
    other_task = task_pb2.Task(
        labels=[task_pb2.Label(index=0, name="cat"), task_pb2.Label(index=1, name="dog")]
    )
    with pytest.raises(PermanentError, match="differ"):
        await image_pair.annotator.annotate(other_task, good, naive)
    out_of_range = annotation_pb2.Annotation(item=good, label_index=10)
    with pytest.raises(PermanentError, match="outside"):
        await image_pair.critic.critique(task, out_of_range, common_pb2.CRITIQUE_STRATEGY_NAIVE)


def test_critic_must_differ_from_annotator(fashion_train: LabelledPool):
    with pytest.raises(ValueError, match="different model"):
        build_pair(fashion_train, per_class=2, annotator="logreg-hog", critic="logreg-hog")


@pytest.mark.slow
def test_text_pair_on_spam():
    """MiniLM annotator and n-gram critic on SpamAssassin (embeddings cached on disk)."""
    pool = builtin_pool("spam-assassin")
    pair = build_pair(pool, seed=0)
    assert pair.annotator.model.name == "logreg-minilm"
    assert pair.critic.model.name == "logreg-ngrams"
    seed_ids = set(pair.selection.ids)
    idx = np.array([i for i in range(0, len(pool), 20) if pool.ids[i] not in seed_ids][:300])
    task = _task(pool)
    items = pool.items(idx, task.task_id)
    human = pool.labels[idx]
    machine = np.array([r.label_index for r in pair.annotator.annotate_many(task, items)])
    assert accuracy(machine, human) > 0.8  # the majority class is 69%
    eps = pair.critic.eps_many(items, machine.tolist())
    randoms = [abs_score(machine, human, random_critic_eps(len(idx), s)) for s in range(20)]
    assert abs_score(machine, human, eps) > max(randoms)


def test_backends_from_model_refs_are_cached_and_validated():
    from services.fewshot.pair import annotator_from_ref, critic_from_ref

    ref = common_pb2.ModelRef(
        provider="local-fewshot",
        model="default",
        params={"dataset": "fashion-mnist", "per_class": "5", "seed": "1"},
    )
    annotator, critic = annotator_from_ref(ref), critic_from_ref(ref)
    assert annotator.name == "logreg-pixels@k5s1" and critic.name == "logreg-hog@k5s1"
    assert annotator_from_ref(ref).model is annotator.model  # fit once per process
    explicit = common_pb2.ModelRef(
        provider="local-fewshot",
        model="knn-hog",
        params={"dataset": "fashion-mnist", "per_class": "5"},
    )
    assert critic_from_ref(explicit).name == "knn-hog@k5s0"
    with pytest.raises(ValueError, match="dataset"):
        annotator_from_ref(common_pb2.ModelRef(provider="local-fewshot"))
