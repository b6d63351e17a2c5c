"""What the annotator and criticizer stages share around their model backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from act.v1 import common_pb2
from google.protobuf.message import Message as ProtoMessage

from services.runtime.stage import Hook, HookedStage
from services.runtime.tasks import TaskSource

M = TypeVar("M", bound=ProtoMessage)
B = TypeVar("B")
S = TypeVar("S", bound=int)  # the stage's strategy enum


class ModelStage(HookedStage[M], Generic[M, B, S]):
    """A stage that asks a backend about each record of a task.

    Holds the backend, the task source, the provider name its outputs carry
    when the task names none, and the strategy for tasks that leave it
    unspecified (``fallback_strategy`` unless given). Subclasses name their
    per-strategy metric families.
    """

    fallback_strategy: S

    def __init__(
        self,
        backend: B,
        tasks: TaskSource,
        *,
        provider: str = "",
        default_strategy: S | None = None,
        on_start: Sequence[Hook] = (),
        on_stop: Sequence[Hook] = (),
    ) -> None:
        super().__init__(on_start=on_start, on_stop=on_stop)
        self.backend = backend
        self.tasks = tasks
        self.provider = provider
        self.default_strategy: S = (
            self.fallback_strategy if default_strategy is None else default_strategy
        )
        self._metric_children: dict[int, tuple[Any, ...]] = {}

    def strategy_name(self, strategy: int) -> str:
        """The strategy's enum name (the metrics' label)."""
        raise NotImplementedError

    def metric_families(self) -> tuple[Any, ...]:
        """The metric families labelled by strategy, in the order ``strategy_metrics`` gives."""
        raise NotImplementedError

    def strategy_metrics(self, strategy: int) -> tuple[Any, ...]:
        """The metric children of one strategy (resolved once: labels() is costly per record)."""
        children = self._metric_children.get(strategy)
        if children is None:
            name = self.strategy_name(strategy)
            children = tuple(f.labels(strategy=name) for f in self.metric_families())
            self._metric_children[strategy] = children
        return children

    def output_model(self, ref: common_pb2.ModelRef, model: str) -> common_pb2.ModelRef:
        """The ModelRef an output records: the task's ref with the model that answered."""
        return common_pb2.ModelRef(
            provider=ref.provider or self.provider,
            model=model,
            base_url=ref.base_url,
            params=dict(ref.params),
        )
