"""The one backend builder: what a model stage or a candidate runs, built in one place.

Given a backend choice and LLM options (a service's settings), LLM options
alone (an LLM candidate) or a few-shot spec and a labelled pool (a few-shot
candidate), it returns :class:`Backends`: an annotator and a critic over the
same model, the provider name their outputs carry, and the client to close.
Its callers:

* the annotator and criticizer services (:func:`build_backend_stage`, from their
  ``__main__``) and their benchmarks (:func:`llm_backends`);
* ``act select-models`` (:mod:`services.evaluation.candidates`:
  :func:`llm_backends`, :func:`fewshot_seed_backends`).

``llm`` builds one client (it connects lazily; ``close`` releases it) and the
LLM annotator and critic of :mod:`services.llm`; ``local-fewshot`` the routers
of :mod:`services.fewshot.routing`, which fit the model each task's ModelRef
names once per process and refuse a bad ref with a PermanentError. The model
code is imported on first use, so ``act --help`` and few-shot-only runs do not
load the LLM SDKs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from services.backend_api.protocols import AnnotatorBackend, CriticBackend
from services.backends.settings import BackendSettings, ModelStageSettings
from services.llm.settings import LLMOptions
from services.runtime.config import KafkaSettings
from services.runtime.tasks import TaskRegistry

if TYPE_CHECKING:
    from services.backend_api.stage import BackendStage
    from services.fewshot.pools import LabelledPool

Role = Literal["annotator", "critic"]


@dataclass(frozen=True)
class Backends:
    """An annotator and a critic over one model, and what to release when done."""

    annotator: AnnotatorBackend
    critic: CriticBackend
    #: The provider an output records when its task's ModelRef names none.
    provider: str
    #: Closes the model client (HTTP connections); None when there is none.
    close: Callable[[], Awaitable[None]] | None = None

    def for_role(self, role: Role) -> AnnotatorBackend | CriticBackend:
        """The annotator or the critic."""
        return self.annotator if role == "annotator" else self.critic


def llm_backends(options: LLMOptions) -> Backends:
    """The LLM annotator and critic over the one client ``options`` describe."""
    from services.llm.annotator.backend import LLMAnnotatorBackend
    from services.llm.critic.backend import LLMCriticBackend
    from services.llm.factory import make_client

    client = make_client(options)
    return Backends(
        annotator=LLMAnnotatorBackend(client, options),
        critic=LLMCriticBackend(client, options),
        provider=options.provider,
        close=client.aclose,
    )


def fewshot_router_backends(default_dataset: str = "") -> Backends:
    """Few-shot routers: each task's ModelRef names the model, fit on first use."""
    from services.fewshot.pair import PROVIDER
    from services.fewshot.routing import FewShotAnnotatorRouter, FewShotCriticRouter

    return Backends(
        annotator=FewShotAnnotatorRouter(default_dataset),
        critic=FewShotCriticRouter(default_dataset),
        provider=PROVIDER,
    )


def fewshot_seed_backends(spec: str, pool: LabelledPool, per_class: int, seed: int = 0) -> Backends:
    """One few-shot model (``spec``) fit now on ``per_class`` seed examples from ``pool``."""
    from services.fewshot.pair import PROVIDER, FewShotAnnotator, FewShotCritic, fit_on_seed
    from services.fewshot.seed import select_seed

    selection = select_seed(
        pool.ids, pool.label_of, n_classes=pool.n_classes, per_class=per_class, seed=seed
    )
    model = fit_on_seed(spec, pool, selection)
    return Backends(
        annotator=FewShotAnnotator(model, selection, pool.label_names),
        critic=FewShotCritic(model, selection, pool.label_names),
        provider=PROVIDER,
    )


def build_backends(choice: BackendSettings, llm: LLMOptions) -> Backends:
    """The backends a service's ``backend`` and ``llm`` settings name."""
    if choice.backend == "local-fewshot":
        return fewshot_router_backends(choice.fewshot_dataset)
    return llm_backends(llm)


ST = TypeVar("ST", bound="BackendStage[Any, Any, Any]")


def build_backend_stage(
    stage: type[ST],
    role: Role,
    settings: ModelStageSettings,
    kafka: KafkaSettings,
    *,
    default_strategy: int,
) -> ST:
    """The annotator's or criticizer's stage around the ``role`` backend its settings name.

    ``settings.backend`` picks the backend, ``settings.llm`` configures an LLM
    client. Tasks come from the compacted tasks topic; the model client (if
    any) is closed when the stage stops.
    """
    backends = build_backends(settings.backend, settings.llm)
    registry = TaskRegistry(kafka)
    closers = [backends.close] if backends.close is not None else []
    return stage(
        backends.for_role(role),
        registry,
        provider=backends.provider,
        default_strategy=default_strategy,
        on_start=[registry.start],
        on_stop=[registry.stop, *closers],
    )
