"""What the annotator and criticizer stages share around their model backend."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from act.v1 import common_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message as ProtoMessage

from services.backend_api.protocols import CallUsage
from services.runtime.stage import Hook, HookedStage
from services.runtime.tasks import TaskSource

M = TypeVar("M", bound=ProtoMessage)
B = TypeVar("B")
S = TypeVar("S", bound=int)  # the stage's strategy enum
R = TypeVar("R")


class BackendStage(HookedStage[M], Generic[M, B, S]):
    """A stage that asks a backend about each record of a task.

    Holds the backend, the task source, the provider name its outputs carry
    when the task names none, and the strategy for tasks that leave it
    unspecified (``fallback_strategy`` unless given). Subclasses name their
    strategy enum and their per-strategy metric families.
    """

    fallback_strategy: S
    #: The strategy enum (its value names label the metrics).
    strategy_enum: ClassVar[EnumTypeWrapper]

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
        return str(self.strategy_enum.Name(strategy))

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

    @staticmethod
    async def timed(call: Awaitable[R]) -> tuple[R, float]:
        """The backend call's result and how long it took, in milliseconds."""
        started = time.perf_counter()
        result = await call
        return result, (time.perf_counter() - started) * 1000.0

    @staticmethod
    def output_usage(usage: CallUsage, elapsed_ms: float) -> common_pb2.Usage:
        """The Usage an output records: the backend's, with the measured
        ``elapsed_ms`` when the backend reports no latency."""
        proto = usage.to_proto()
        if not proto.latency_ms:
            proto.latency_ms = elapsed_ms
        return proto
