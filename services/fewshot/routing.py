"""Few-shot backends for the annotator and criticizer services, chosen per task.

With ``ACT_ANNOTATOR_BACKEND=local-fewshot`` (or ``ACT_CRITICIZER_BACKEND``)
a service runs the few-shot pair instead of an LLM. Which model, which
labelled pool its seed comes from and how large the seed is are the task's
to say, in its ``annotator_model`` / ``critic_model`` ModelRef (provider
``local-fewshot``, ``model`` a spec or ``default``, params ``dataset``,
``per_class``, ``seed``); the service's ``fewshot_dataset`` fills in a
missing ``dataset``. A model is fit on its seed once per process, in a worker
thread so the event loop keeps serving the records of other tasks, and then
shared by every record of every task that names the same ModelRef. The
routers are built by :func:`services.backends.build.fewshot_router_backends`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.backend_api.protocols import AnnotationResult, CritiqueResult
from services.fewshot.pair import (
    PROVIDER,
    FewShotAnnotator,
    FewShotCritic,
    annotator_from_ref,
    critic_from_ref,
)
from services.runtime.retry import PermanentError

B = TypeVar("B")


class _ByRef(Generic[B]):
    """Backends built from ModelRefs, once each, off the event loop."""

    def __init__(self, build: Callable[[common_pb2.ModelRef], B], default_dataset: str) -> None:
        self._build = build
        self._default_dataset = default_dataset
        self._built: dict[bytes, asyncio.Future[B]] = {}

    def resolve(self, ref: common_pb2.ModelRef) -> common_pb2.ModelRef:
        """The ref with the service defaults filled in (refused if it names another provider)."""
        provider = ref.provider.strip().lower()
        if provider and provider != PROVIDER:
            raise PermanentError(
                f"task wants provider {ref.provider!r} but this service runs {PROVIDER!r}"
            )
        resolved = common_pb2.ModelRef()
        resolved.CopyFrom(ref)
        resolved.provider = PROVIDER
        if not resolved.params.get("dataset") and self._default_dataset:
            resolved.params["dataset"] = self._default_dataset
        return resolved

    async def get(self, ref: common_pb2.ModelRef) -> B:
        """The backend ``ref`` names (fit on first use; a bad ref is a PermanentError)."""
        resolved = self.resolve(ref)
        key = resolved.SerializeToString(deterministic=True)
        fit = self._built.get(key)
        if fit is None:
            # One fit per ref even when many records ask at once: they all await
            # it, and a cancelled record does not cancel the others' fit.
            fit = self._built[key] = asyncio.ensure_future(asyncio.to_thread(self._build, resolved))
        try:
            return await asyncio.shield(fit)
        except (ValueError, KeyError) as exc:
            if self._built.get(key) is fit:
                del self._built[key]  # a corrected task may name the same ref later
            raise PermanentError(f"cannot build the few-shot model: {exc}") from None


class FewShotAnnotatorRouter:
    """An :class:`~services.backend_api.protocols.AnnotatorBackend` running each task's
    few-shot annotator."""

    def __init__(self, default_dataset: str = "") -> None:
        self._models: _ByRef[FewShotAnnotator] = _ByRef(annotator_from_ref, default_dataset)

    async def annotate(
        self,
        task: task_pb2.Task,
        item: item_pb2.Item,
        strategy: common_pb2.AnnotationStrategy.ValueType,
    ) -> AnnotationResult:
        """Label one item with the annotator the task's ``annotator_model`` names."""
        backend = await self._models.get(task.annotator_model)
        return await backend.annotate(task, item, strategy)


class FewShotCriticRouter:
    """:class:`~services.backend_api.protocols.CriticBackend` running each task's few-shot critic.

    The critic is a different model from the annotator unless the task names
    the same spec for both (self-criticism is configuration, as with LLMs).
    """

    def __init__(self, default_dataset: str = "") -> None:
        self._models: _ByRef[FewShotCritic] = _ByRef(critic_from_ref, default_dataset)

    async def critique(
        self,
        task: task_pb2.Task,
        annotation: annotation_pb2.Annotation,
        strategy: common_pb2.CritiqueStrategy.ValueType,
    ) -> CritiqueResult:
        """eps for one annotation from the critic the task's ``critic_model`` names."""
        backend = await self._models.get(task.critic_model)
        return await backend.critique(task, annotation, strategy)
