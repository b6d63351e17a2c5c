"""The few-shot local annotator/critic pair: useful labels and eps with no network.

In the spirit of in-context examples, both models see only a small seed of
human-labelled examples per class (:mod:`services.fewshot.seed`) and never any
other label of the data set. The critic is a *different* model from the
annotator, on different features: cross-criticism (paper, section 4.2,
Insight 3: the best ABS typically comes from cross-criticism).

- images: annotator ``logreg-pixels`` (logistic regression on raw pixels),
  critic ``logreg-hog`` (logistic regression on gradient histograms);
- text: annotator ``logreg-minilm`` (logistic regression on all-MiniLM-L6-v2
  embeddings), critic ``logreg-ngrams`` (logistic regression on hashed word
  1-2-grams).

The critic outputs eps = P(label wrong | item, given label)
= 1 - P_critic(given label | item), with P_critic calibrated by temperature
scaling on held-out predictions of the seed.

Seed sizes (:data:`DEFAULT_PER_CLASS`), measured over seeds 0-4:

- Fashion-MNIST, 60 images per class: annotator accuracy 78.0% +- 0.5 on the
  10,000 test images (40: 77.0%, 50: 77.5%), like GPT-4o's 78.19% in the
  paper (Table 3's 21.81% ideal budget); critic ABS 0.80.
- SpamAssassin, 32 emails per class: annotator accuracy 88-95% (seeds 0-2, on
  3,000 other emails), critic ABS 0.92-0.96; 16 per class gives 85-92%.

Both backends implement :mod:`services.backend_api.protocols`'s protocols, so the
annotator and criticizer services run them like any LLM backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.backend_api.protocols import AnnotationResult, CallUsage, CritiqueResult
from services.datasets.png import ImageDecodeError, decode_gray, resize_gray
from services.fewshot.batching import MicroBatcher
from services.fewshot.classifiers import FloatMatrix
from services.fewshot.model import FewShotModel, Modality, build_fewshot_model
from services.fewshot.pools import LabelledPool, builtin_pool
from services.fewshot.seed import DEFAULT_SEED, SeedSelection, select_seed
from services.runtime.retry import PermanentError

#: Provider name in ModelRef for these backends.
PROVIDER = "local-fewshot"
#: Seed examples per class by modality (see the module docstring).
DEFAULT_PER_CLASS: dict[str, int] = {"image": 60, "text": 32}
#: (annotator, critic) model specs by modality.
DEFAULT_MODELS: dict[str, tuple[str, str]] = {
    "image": ("logreg-pixels", "logreg-hog"),
    "text": ("logreg-minilm", "logreg-ngrams"),
}
_IMAGE_SIDE = 28


def model_id(model: FewShotModel[Any], selection: SeedSelection) -> str:
    """The model name reported in annotations/critiques, e.g. ``logreg-pixels@k40s0``."""
    return f"{model.name}@k{selection.per_class}s{selection.seed}"


def _check_task(task: task_pb2.Task, label_names: Sequence[str]) -> None:
    """The task must use the seed's label set (same names in the same order)."""
    names = [label.name for label in task.labels]
    if not names:
        return  # a task without labels relies on the backend's own set
    if [n.strip().lower() for n in names] != [n.strip().lower() for n in label_names]:
        raise PermanentError(
            f"task labels {names} differ from the few-shot seed's labels {list(label_names)}"
        )


class _Inputs:
    """Turns items into the model's raw inputs, rejecting bad items one by one."""

    def __init__(self, modality: Modality) -> None:
        self.modality = modality

    def of(self, item: item_pb2.Item) -> Any:
        if self.modality == "text":
            if not item.text.strip():
                raise PermanentError("item has no text for the text few-shot model")
            return item.text
        if item.WhichOneof("image") != "image_bytes":
            raise PermanentError(
                "the image few-shot model needs inline image_bytes (claim-check URIs "
                "are resolved by the LLM backends only)"
            )
        try:
            pixels = decode_gray(bytes(item.image_bytes))
        except ImageDecodeError as exc:
            raise PermanentError(f"cannot decode the item's image: {exc}") from exc
        return resize_gray(pixels, _IMAGE_SIDE)

    def batch(self, values: list[Any]) -> Any:
        if self.modality == "text":
            return values
        return np.stack(values).astype(np.uint8)


class _Scorer:
    """A fitted model behind a micro-batcher: item -> probability row."""

    def __init__(self, model: FewShotModel[Any], max_batch: int) -> None:
        self.model = model
        self.inputs = _Inputs(model.modality)
        self.batcher: MicroBatcher[Any, FloatMatrix] = MicroBatcher(self._run, max_batch=max_batch)

    def _run(self, values: list[Any]) -> list[FloatMatrix]:
        proba = self.model.predict_proba(self.inputs.batch(values))
        return [proba[i] for i in range(proba.shape[0])]

    async def proba(self, item: item_pb2.Item) -> FloatMatrix:
        return await self.batcher.submit(self.inputs.of(item))

    def proba_many(self, items: Sequence[item_pb2.Item]) -> FloatMatrix:
        values = [self.inputs.of(item) for item in items]
        return self.model.predict_proba(self.inputs.batch(values))


def _rationale(proba: FloatMatrix, label_names: Sequence[str], top: int = 3) -> str:
    order = np.argsort(-proba, kind="stable")[:top]
    return "; ".join(f"P({label_names[i]})={proba[i]:.3f}" for i in order)


class FewShotAnnotator:
    """:class:`~services.backend_api.protocols.AnnotatorBackend`: the seed-fit classifier's argmax.

    The label is the most probable class; ``confidence`` is its calibrated
    probability. Both strategies give the same label (a classifier has no
    prompt); chain-of-thought adds the top class probabilities as rationale.
    """

    def __init__(
        self,
        model: FewShotModel[Any],
        selection: SeedSelection,
        label_names: Sequence[str],
        *,
        max_batch: int = 64,
    ) -> None:
        if not model.fitted:
            raise ValueError("fit the model on its seed first")
        self.model = model
        self.selection = selection
        self.label_names = tuple(label_names)
        self.name = model_id(model, selection)
        self._scorer = _Scorer(model, max_batch)

    def _result(self, proba: FloatMatrix, strategy: int) -> AnnotationResult:
        label = int(np.argmax(proba))
        reasoning = strategy == common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT
        return AnnotationResult(
            label_index=label,
            model=self.name,
            rationale=_rationale(proba, self.label_names) if reasoning else "",
            raw_output=f"[{label}]",
            confidence=float(proba[label]),
            usage=CallUsage(),
        )

    async def annotate(
        self,
        task: task_pb2.Task,
        item: item_pb2.Item,
        strategy: common_pb2.AnnotationStrategy.ValueType,
    ) -> AnnotationResult:
        """Label one item (PermanentError for items the model cannot read)."""
        _check_task(task, self.label_names)
        return self._result(await self._scorer.proba(item), strategy)

    def annotate_many(
        self,
        task: task_pb2.Task,
        items: Sequence[item_pb2.Item],
        strategy: common_pb2.AnnotationStrategy.ValueType = common_pb2.ANNOTATION_STRATEGY_NAIVE,
    ) -> list[AnnotationResult]:
        """Label many items in one synchronous batch (benchmarks, model selection)."""
        _check_task(task, self.label_names)
        proba = self._scorer.proba_many(items)
        return [self._result(proba[i], strategy) for i in range(len(items))]


class FewShotCritic:
    """A :class:`~services.backend_api.protocols.CriticBackend`:
    eps = 1 - P_critic(given label | item).

    The probability is the critic model's own (calibrated) one, so the critic
    disagrees with the annotator exactly where its different view of the item
    does. Strategy-specific fields are filled consistently with eps so every
    strategy's consumers work: multiple choice -> the nearest level 1-5
    (eps = (level - 1) / 4 in the criticizer's mapping), naive-/CoT-logit ->
    p_yes = eps and p_no = 1 - eps, CoT-perplexity -> priority_score = 2 eps
    (the criticizer maps a priority s to eps = s / 2).
    """

    def __init__(
        self,
        model: FewShotModel[Any],
        selection: SeedSelection,
        label_names: Sequence[str],
        *,
        max_batch: int = 64,
    ) -> None:
        if not model.fitted:
            raise ValueError("fit the model on its seed first")
        self.model = model
        self.selection = selection
        self.label_names = tuple(label_names)
        self.name = model_id(model, selection)
        self._scorer = _Scorer(model, max_batch)

    def _label(self, annotation: annotation_pb2.Annotation) -> int:
        label = int(annotation.label_index)
        if not 0 <= label < len(self.label_names):
            raise PermanentError(f"annotation label {label} is outside the task's label set")
        return label

    def _result(self, proba: FloatMatrix, label: int, strategy: int) -> CritiqueResult:
        eps = float(min(1.0, max(0.0, 1.0 - proba[label])))
        fields: dict[str, Any] = {}
        if strategy == common_pb2.CRITIQUE_STRATEGY_MULTIPLE_CHOICE:
            fields["multiple_choice_level"] = 1 + round(4 * eps)
        elif strategy in (
            common_pb2.CRITIQUE_STRATEGY_NAIVE_LOGIT,
            common_pb2.CRITIQUE_STRATEGY_COT_LOGIT,
        ):
            fields.update(p_yes=eps, p_no=1.0 - eps, answer_token="yes" if eps >= 0.5 else "no")
        elif strategy == common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY:
            fields["priority_score"] = 2.0 * eps
        reasoning = strategy in (
            common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT,
            common_pb2.CRITIQUE_STRATEGY_DEVILS_ADVOCATE,
            common_pb2.CRITIQUE_STRATEGY_COT_LOGIT,
            common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY,
        )
        rationale = (
            f"critic {_rationale(proba, self.label_names)}; "
            f"P({self.label_names[label]})={proba[label]:.3f}"
            if reasoning
            else ""
        )
        return CritiqueResult(
            eps=eps,
            model=self.name,
            rationale=rationale,
            raw_output=f"[{eps:.4f}]",
            usage=CallUsage(),
            **fields,
        )

    async def critique(
        self,
        task: task_pb2.Task,
        annotation: annotation_pb2.Annotation,
        strategy: common_pb2.CritiqueStrategy.ValueType,
    ) -> CritiqueResult:
        """Estimate the probability that the annotation's label is wrong."""
        _check_task(task, self.label_names)
        label = self._label(annotation)
        return self._result(await self._scorer.proba(annotation.item), label, strategy)

    def eps_many(self, items: Sequence[item_pb2.Item], labels: Sequence[int]) -> FloatMatrix:
        """eps for many (item, given label) pairs in one synchronous batch."""
        proba = self._scorer.proba_many(items)
        given = np.asarray(labels, dtype=np.int64)
        return np.clip(1.0 - proba[np.arange(len(given)), given], 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class FewShotPair:
    """An annotator and a different critic, both fit on the same seed."""

    annotator: FewShotAnnotator
    critic: FewShotCritic
    selection: SeedSelection
    label_names: tuple[str, ...]
    modality: Modality
    pool_name: str


def fit_on_seed(spec: str, pool: LabelledPool, selection: SeedSelection) -> FewShotModel[Any]:
    """A fresh model of ``spec`` fit on the seed's inputs and labels (nothing else)."""
    model = build_fewshot_model(spec)
    if model.modality != pool.modality:
        raise ValueError(
            f"model {spec!r} is for {model.modality}, pool {pool.name!r} is {pool.modality}"
        )
    return model.fit(pool.inputs(selection.indices), selection.labels, pool.n_classes)


def build_pair(
    pool: LabelledPool,
    *,
    per_class: int | None = None,
    seed: int = DEFAULT_SEED,
    annotator: str | None = None,
    critic: str | None = None,
) -> FewShotPair:
    """Select a seed from ``pool`` and fit the annotator and the critic on it."""
    per_class = per_class or DEFAULT_PER_CLASS[pool.modality]
    default_annotator, default_critic = DEFAULT_MODELS[pool.modality]
    annotator, critic = annotator or default_annotator, critic or default_critic
    if annotator == critic:
        raise ValueError("the critic must be a different model from the annotator")
    selection = select_seed(
        pool.ids, pool.label_of, n_classes=pool.n_classes, per_class=per_class, seed=seed
    )
    return FewShotPair(
        annotator=FewShotAnnotator(
            fit_on_seed(annotator, pool, selection), selection, pool.label_names
        ),
        critic=FewShotCritic(fit_on_seed(critic, pool, selection), selection, pool.label_names),
        selection=selection,
        label_names=pool.label_names,
        modality=pool.modality,
        pool_name=pool.name,
    )


def pair_for_dataset(
    dataset: str,
    *,
    per_class: int | None = None,
    seed: int = DEFAULT_SEED,
    annotator: str | None = None,
    critic: str | None = None,
) -> FewShotPair:
    """The pair for a built-in data set: ``fashion-mnist`` (seeded from its training
    split) or ``spam-assassin``."""
    return build_pair(
        builtin_pool(dataset), per_class=per_class, seed=seed, annotator=annotator, critic=critic
    )


_FITTED: dict[tuple[str, str, int, int], tuple[FewShotModel[Any], SeedSelection, LabelledPool]] = {}


def _fitted_from_ref(
    ref: common_pb2.ModelRef, role: str
) -> tuple[FewShotModel[Any], SeedSelection, LabelledPool]:
    """The model a ``local-fewshot`` ModelRef names, fit once per process and cached."""
    params = dict(ref.params)
    dataset = params.get("dataset", "")
    if not dataset:
        raise ValueError(
            "a local-fewshot model needs params['dataset'] (the labelled pool its seed comes "
            "from: fashion-mnist or spam-assassin)"
        )
    pool = builtin_pool(dataset)
    spec = ref.model or "default"
    if spec == "default":
        spec = DEFAULT_MODELS[pool.modality][0 if role == "annotator" else 1]
    try:
        per_class = int(params.get("per_class", DEFAULT_PER_CLASS[pool.modality]))
        seed = int(params.get("seed", DEFAULT_SEED))
    except ValueError as exc:
        raise ValueError(f"bad local-fewshot params {params}: {exc}") from None
    key = (spec, dataset, per_class, seed)
    if key not in _FITTED:
        selection = select_seed(
            pool.ids, pool.label_of, n_classes=pool.n_classes, per_class=per_class, seed=seed
        )
        _FITTED[key] = (fit_on_seed(spec, pool, selection), selection, pool)
    return _FITTED[key]


def annotator_from_ref(ref: common_pb2.ModelRef) -> FewShotAnnotator:
    """The annotator a ModelRef describes: ``provider="local-fewshot"``, ``model`` = a
    spec of :data:`services.fewshot.model.FEWSHOT_SPECS` or ``default``, and params
    ``dataset`` (required), ``per_class`` and ``seed`` (optional)."""
    model, selection, pool = _fitted_from_ref(ref, "annotator")
    return FewShotAnnotator(model, selection, pool.label_names)


def critic_from_ref(ref: common_pb2.ModelRef) -> FewShotCritic:
    """The critic a ModelRef describes (as :func:`annotator_from_ref`; ``default`` is the
    pair's critic model, different from its annotator)."""
    model, selection, pool = _fitted_from_ref(ref, "critic")
    return FewShotCritic(model, selection, pool.label_names)
