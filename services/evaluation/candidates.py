"""Running candidate models on a small human-labelled set, for model selection.

A candidate is a model that can act both as annotator and as critic:

- ``fewshot:SPEC[:K]``: a few-shot local model (:data:`services.fewshot.model.FEWSHOT_SPECS`,
  e.g. ``fewshot:logreg-minilm:16``) fit on K seed examples per class (default
  by modality). As annotator it outputs its argmax; as critic
  eps = 1 - P(given label | item).
- ``openai:MODEL@BASE_URL`` (or ``openai:MODEL`` for the public API): any
  OpenAI-compatible server (vLLM, llama.cpp, OpenAI) through the LLM annotator
  and critic the services run; the API key comes from the environment as for
  those services. ``anthropic:MODEL`` likewise.

Both kinds are built by the one backend builder, :mod:`services.backends.build`
(:func:`~services.backends.build.llm_backends`,
:func:`~services.backends.build.fewshot_seed_backends`), as the services' are.

:func:`run_selection` labels every item with every candidate, lets every
candidate criticise every candidate's labels (or only the pairs asked for),
and hands the results to :func:`services.core.selection.select_models`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.backend_api.protocols import AnnotatorBackend, CriticBackend
from services.backends.build import Backends, fewshot_seed_backends, llm_backends
from services.core.selection import SelectionReport, select_models
from services.llm.settings import LLMOptions

PairMode = Literal["all", "recommended"]


class CandidateError(ValueError):
    """A candidate specification that cannot be built."""


@dataclass
class Candidate:
    """A named model usable as annotator and as critic."""

    name: str
    annotator: AnnotatorBackend
    critic: CriticBackend
    model_ref: common_pb2.ModelRef
    close: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def of(cls, name: str, backends: Backends, model_ref: common_pb2.ModelRef) -> Candidate:
        """A candidate running the builder's annotator and critic."""
        return cls(name, backends.annotator, backends.critic, model_ref, backends.close)


@dataclass(frozen=True, slots=True)
class FewShotSpec:
    """A parsed ``fewshot:SPEC[:K]``."""

    spec: str
    per_class: int | None

    @property
    def name(self) -> str:
        return f"fewshot:{self.spec}" + (f":{self.per_class}" if self.per_class else "")


@dataclass(frozen=True, slots=True)
class LLMSpec:
    """A parsed ``openai:MODEL[@BASE_URL]`` or ``anthropic:MODEL``."""

    provider: Literal["openai", "anthropic"]
    model: str
    base_url: str = ""

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")


def parse_candidate(text: str) -> FewShotSpec | LLMSpec:
    """Parse one ``--candidate`` value (see the module docstring)."""
    kind, sep, rest = text.strip().partition(":")
    if not sep or not rest:
        raise CandidateError(
            f"bad candidate {text!r}: expected fewshot:SPEC[:K], openai:MODEL[@URL] "
            "or anthropic:MODEL"
        )
    if kind == "fewshot":
        from services.fewshot.model import FEWSHOT_SPECS

        spec, _, k = rest.partition(":")
        if spec not in FEWSHOT_SPECS:
            raise CandidateError(
                f"unknown few-shot model {spec!r}; known: {', '.join(sorted(FEWSHOT_SPECS))}"
            )
        if k and (not k.isdigit() or int(k) < 1):
            raise CandidateError(f"bad seed size {k!r} in {text!r} (a positive integer)")
        return FewShotSpec(spec, int(k) if k else None)
    if kind in ("openai", "anthropic"):
        model, _, base_url = rest.partition("@")
        if not model:
            raise CandidateError(f"bad candidate {text!r}: no model name")
        if kind == "anthropic" and base_url:
            raise CandidateError("anthropic candidates take no base URL")
        return LLMSpec(kind, model, base_url)  # type: ignore[arg-type]
    raise CandidateError(
        f"unknown candidate kind {kind!r} in {text!r} (fewshot, openai, anthropic)"
    )


def build_llm_candidate(spec: LLMSpec, **options: Any) -> Candidate:
    """LLM annotator + critic backends over one client.

    ``options`` are extra :class:`services.llm.settings.LLMOptions` fields
    (e.g. ``concurrency``, ``timeout_s``); the rest come from the environment
    as for the services.
    """
    llm_options = LLMOptions(
        provider=spec.provider, model=spec.model, base_url=spec.base_url, **options
    )
    ref = common_pb2.ModelRef(
        provider="openai-compatible" if spec.base_url else spec.provider,
        model=spec.model,
        base_url=spec.base_url,
    )
    return Candidate.of(spec.name, llm_backends(llm_options), ref)


def build_fewshot_candidate(spec: FewShotSpec, pool: Any, seed: int = 0) -> Candidate:
    """A few-shot model fit on a seed drawn from ``pool`` (a LabelledPool)."""
    from services.fewshot.pair import DEFAULT_PER_CLASS

    per_class = spec.per_class or DEFAULT_PER_CLASS[pool.modality]
    backends = fewshot_seed_backends(spec.spec, pool, per_class, seed)
    ref = common_pb2.ModelRef(provider=backends.provider, model=f"{spec.spec}:{per_class}")
    return Candidate.of(spec.name, backends, ref)


@dataclass
class SelectionRun:
    """Raw outcome of :func:`run_selection` (labels, eps) plus the report."""

    report: SelectionReport
    labels: dict[str, np.ndarray[Any, np.dtype[np.int64]]]
    eps: dict[tuple[str, str], np.ndarray[Any, np.dtype[np.float64]]]
    failures: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


def _task(template: task_pb2.Task, annotator: Candidate, critic: Candidate | None) -> task_pb2.Task:
    task = task_pb2.Task()
    task.CopyFrom(template)
    task.annotator_model.CopyFrom(annotator.model_ref)
    if critic is not None:
        task.critic_model.CopyFrom(critic.model_ref)
    return task


async def _bounded(limit: asyncio.Semaphore, coro: Awaitable[Any]) -> Any:
    async with limit:
        return await coro


async def run_selection(
    candidates: Sequence[Candidate],
    task: task_pb2.Task,
    items: Sequence[item_pb2.Item],
    human: Sequence[int],
    *,
    annotation_strategy: common_pb2.AnnotationStrategy.ValueType = (
        common_pb2.ANNOTATION_STRATEGY_NAIVE
    ),
    critique_strategy: common_pb2.CritiqueStrategy.ValueType = (
        common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT
    ),
    pairs: PairMode = "all",
    concurrency: int = 32,
    buffer: float = 0.10,
    progress: Callable[[str], None] | None = None,
) -> SelectionRun:
    """Annotate ``items`` with every candidate, criticise, and select (section 4.3).

    ``human`` are the items' human labels; they are only compared with the
    outputs here and never passed to a model (the items carry no
    ``reference_label``). An item a candidate fails to label counts as wrong
    (label -1) and gets eps = 1 from every critic (it must be reviewed); a
    failed critique gets eps = 0.5 (no information).
    """
    if not candidates:
        raise ValueError("no candidates")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError("candidate names must be unique")
    clean_items = []
    for item in items:
        copy = item_pb2.Item()
        copy.CopyFrom(item)
        copy.ClearField("reference_label")  # never shown to models
        clean_items.append(copy)
    human_arr = np.asarray(human, dtype=np.int64)
    limit = asyncio.Semaphore(concurrency)
    say = progress or (lambda _msg: None)
    labels: dict[str, np.ndarray[Any, np.dtype[np.int64]]] = {}
    annotations: dict[str, list[annotation_pb2.Annotation | None]] = {}
    failures: dict[str, int] = {}
    errors: dict[str, list[str]] = {}

    for cand in candidates:
        say(f"annotating {len(clean_items)} items with {cand.name}")
        cand_task = _task(task, cand, None)
        results = await asyncio.gather(
            *(
                _bounded(limit, cand.annotator.annotate(cand_task, item, annotation_strategy))
                for item in clean_items
            ),
            return_exceptions=True,
        )
        row = np.full(len(clean_items), -1, dtype=np.int64)
        kept: list[annotation_pb2.Annotation | None] = []
        for i, (item, result) in enumerate(zip(clean_items, results, strict=True)):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                errors.setdefault(cand.name, []).append(f"{item.item_id}: {result}")
                kept.append(None)
                continue
            row[i] = result.label_index
            annotation = annotation_pb2.Annotation(
                item=item,
                label_index=result.label_index,
                rationale=result.rationale,
                model=cand.model_ref,
                strategy=annotation_strategy,
            )
            if 0 <= result.label_index < len(task.labels):
                annotation.label_name = task.labels[result.label_index].name
            kept.append(annotation)
        labels[cand.name] = row
        annotations[cand.name] = kept
        failures[cand.name] = int((row < 0).sum())

    ranked = sorted(
        names, key=lambda n: -float(np.mean(labels[n] == human_arr)) if len(human_arr) else 0.0
    )
    if pairs == "all":
        wanted = [(a, c) for a in names for c in names]
    else:
        best = ranked[0]
        wanted = [(best, c) for c in ranked[:2]]
    by_name = {c.name: c for c in candidates}
    eps: dict[tuple[str, str], np.ndarray[Any, np.dtype[np.float64]]] = {}
    for annotator_name, critic_name in wanted:
        critic = by_name[critic_name]
        say(f"criticising {annotator_name}'s labels with {critic_name}")
        pair_task = _task(task, by_name[annotator_name], critic)
        scores = np.ones(len(clean_items), dtype=np.float64)
        todo = [(i, a) for i, a in enumerate(annotations[annotator_name]) if a is not None]
        results = await asyncio.gather(
            *(
                _bounded(limit, critic.critic.critique(pair_task, a, critique_strategy))
                for _, a in todo
            ),
            return_exceptions=True,
        )
        for (i, _), result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                errors.setdefault(critic_name, []).append(f"critique {i}: {result}")
                scores[i] = 0.5
            else:
                scores[i] = min(1.0, max(0.0, float(result.eps)))
        eps[(annotator_name, critic_name)] = scores

    report = select_models(labels, human_arr, eps, failures=failures, buffer=buffer)
    return SelectionRun(report=report, labels=labels, eps=eps, failures=failures, errors=errors)


async def close_candidates(candidates: Sequence[Candidate]) -> None:
    """Release the candidates' clients (HTTP connections)."""
    for cand in candidates:
        if cand.close is not None:
            with contextlib.suppress(Exception):
                await cand.close()


@dataclass(frozen=True)
class SelectionSets:
    """The human-labelled evaluation items and the pool few-shot seeds come from."""

    eval_pool: Any  # LabelledPool of the evaluation items
    seed_pool: Any  # LabelledPool that few-shot candidates draw their seed from


def plan_sets(
    pool: Any,
    *,
    n: int | None,
    seed: int = 0,
    fewshot: Sequence[FewShotSpec] = (),
    seed_first: bool = False,
) -> SelectionSets:
    """Split a labelled pool into evaluation items and a disjoint seed pool.

    A large pool (a built-in data set): ``n`` evaluation items in a fixed
    pseudo-random order, the rest is the seed pool. A small pool (a user's
    labelled file, ``seed_first``): the few-shot candidates' seeds are drawn
    first and every candidate is evaluated on the remaining items, so all
    candidates are scored on the same items and no model is scored on its
    own seed.
    """
    from services.fewshot.pair import DEFAULT_PER_CLASS
    from services.fewshot.seed import hash_order, select_seed

    order = hash_order(pool.ids, seed + 1)  # a different order from the seed's
    if not seed_first:
        count = len(order) if n is None else min(n, len(order))
        eval_idx = order[:count]
        rest = np.setdiff1d(np.arange(len(pool.ids)), eval_idx)
        return SelectionSets(eval_pool=pool.subset(eval_idx), seed_pool=pool.subset(rest))
    used: set[int] = set()
    for spec in fewshot:
        per_class = spec.per_class or DEFAULT_PER_CLASS[pool.modality]
        chosen = select_seed(
            pool.ids, pool.label_of, n_classes=pool.n_classes, per_class=per_class, seed=seed
        )
        used.update(int(i) for i in chosen.indices)
    remaining = np.array([i for i in range(len(pool.ids)) if i not in used], dtype=np.int64)
    if n is not None:
        remaining = remaining[:n]
    if remaining.size == 0:
        raise CandidateError(
            "no items left to evaluate after drawing the few-shot seeds; give a larger "
            "labelled set or smaller seeds (fewshot:SPEC:K)"
        )
    return SelectionSets(eval_pool=pool.subset(remaining), seed_pool=pool)
