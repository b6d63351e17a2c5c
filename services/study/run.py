"""Running the study: calibration, sizing, annotation and critique phases.

Models are the candidates of ``act select-models``
(:func:`services.evaluation.candidates.build_llm_candidate`: the services' own
LLM annotator and critic over one client, built by the one backend builder),
with the local-server client options of the demo and the benchmarks
(:data:`services.llm.settings.LOCAL_SERVER_OPTIONS`). The study adds no
prompt and no parsing of its own; it calls the backends item by item so that
every call's tokens and latency can be recorded, which ``run_selection``'s
aggregate outcome does not keep.

A *phase* is one model running one strategy over a list of items; phases run
one after another (one CPU server busy at a time), so a phase's wall time
gives that model's items/s for that strategy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.evaluation.candidates import (
    Candidate,
    LLMSpec,
    build_llm_candidate,
    close_candidates,
)
from services.llm.settings import LOCAL_SERVER_OPTIONS
from services.study.plan import (
    ANNOTATION_STRATEGIES,
    CRITIC_STRATEGIES,
    INSTRUCTIONS,
    CallKey,
    StudyConfig,
)
from services.study.records import CallRecord, PhaseRecord, RecordStore, prefix_hits
from services.study.servers import ServerPool

Say = Callable[[str], None]

#: Calls in flight per phase: the local server options' client bound. A
#: llama-cpp-python server decodes one request at a time; the second one in
#: flight hides the HTTP round trip between them.
IN_FLIGHT = 2


def study_task(label_names: Sequence[str]) -> task_pb2.Task:
    """The task every model sees (SpamAssassin's labels, the demo's instructions)."""
    return task_pb2.Task(
        task_id="strategy-study",
        name="ACT strategy study (SpamAssassin)",
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(label_names)],
        modality=common_pb2.MODALITY_TEXT,
        instructions=INSTRUCTIONS,
    )


def model_ref(profile: str) -> common_pb2.ModelRef:
    """The ModelRef of a local profile (the server's model alias is the profile name)."""
    return common_pb2.ModelRef(provider="openai-compatible", model=profile)


def _task(template: task_pb2.Task, annotator: str, critic: str | None = None) -> task_pb2.Task:
    task = task_pb2.Task()
    task.CopyFrom(template)
    task.annotator_model.CopyFrom(model_ref(annotator))
    if critic is not None:
        task.critic_model.CopyFrom(model_ref(critic))
    return task


@dataclass
class Runner:
    """Runs phases against the pool's servers and records every call."""

    config: StudyConfig
    pool: ServerPool
    store: RecordStore
    template: task_pb2.Task
    say: Say
    _candidates: dict[str, Candidate] = field(default_factory=dict)

    def candidate(self, profile: str) -> Candidate:
        """The profile's annotator/critic pair (its server started on first use)."""
        if profile not in self._candidates:
            spec = LLMSpec("openai", profile, self.pool.url(profile))
            options: dict[str, Any] = {
                **LOCAL_SERVER_OPTIONS,
                "max_text_chars": self.config.max_text_chars,
            }
            self._candidates[profile] = build_llm_candidate(spec, **options)
        return self._candidates[profile]

    async def close(self) -> None:
        """Close every candidate's HTTP client."""
        await close_candidates(list(self._candidates.values()))
        self._candidates.clear()

    async def _timed(
        self,
        role: str,
        profile: str,
        strategy: str,
        phase: str,
        calls: Sequence[Callable[[], Awaitable[CallRecord]]],
    ) -> None:
        """Run a phase's calls (two in flight, as the local server options), then record it."""
        if not calls:
            return
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def bounded(call: Callable[[], Awaitable[CallRecord]]) -> CallRecord:
            async with limit:
                return await call()

        offset = self.pool.log_size(profile)
        t0 = time.monotonic()
        records = await asyncio.gather(*(bounded(c) for c in calls))
        wall = time.monotonic() - t0
        self.store.add_calls(records)
        log = self.pool.log_since(profile, offset)
        self.store.add_phase(
            PhaseRecord(
                role="annotate" if role == "annotate" else "critique",
                model=profile,
                strategy=strategy,
                n_calls=len(records),
                wall_s=wall,
                prompt_tokens=sum(r.prompt_tokens for r in records),
                cache_hit_tokens=prefix_hits(log) if log is not None else None,
                phase=phase,
            )
        )
        failed = sum(not r.ok for r in records)
        self.say(
            f"  {role} {profile} {strategy}: {len(records)} calls in {wall:.1f} s"
            + (f", {failed} failed" if failed else "")
        )

    async def annotate(
        self, profile: str, strategy: str, items: Sequence[item_pb2.Item], phase: str
    ) -> None:
        """Label the items not yet labelled by this model with this strategy."""
        todo = [
            it
            for it in items
            if self.store.get(("annotate", profile, strategy, "", "", it.item_id)) is None
        ]
        if not todo:
            return
        cand = self.candidate(profile)
        task = _task(self.template, profile)
        value = ANNOTATION_STRATEGIES[strategy]

        def call(item: item_pb2.Item) -> Callable[[], Awaitable[CallRecord]]:
            async def run() -> CallRecord:
                base = CallRecord("annotate", profile, strategy, item.item_id, phase=phase)
                try:
                    r = await cand.annotator.annotate(task, item, value)
                except Exception as exc:  # recorded; the cell counts it as wrong
                    return _failed(base, exc)
                return _with_usage(
                    base, r.usage, r.attempts, label=r.label_index, rationale=r.rationale
                )

            return run

        await self._timed("annotate", profile, strategy, phase, [call(it) for it in todo])

    def annotation(
        self, annotator: str, annotation: str, item: item_pb2.Item
    ) -> annotation_pb2.Annotation | None:
        """The recorded annotation of an item as the critic receives it (None if it failed)."""
        rec = self.store.get(("annotate", annotator, annotation, "", "", item.item_id))
        if rec is None or not 0 <= rec.label < len(self.template.labels):
            return None
        return annotation_pb2.Annotation(
            item=item,
            label_index=rec.label,
            label_name=self.template.labels[rec.label].name,
            rationale=rec.rationale,
            model=model_ref(annotator),
            strategy=ANNOTATION_STRATEGIES[annotation],
        )

    async def critique(
        self,
        critic: str,
        strategy: str,
        annotator: str,
        items: Sequence[item_pb2.Item],
        phase: str,
    ) -> None:
        """Criticise the annotator's (base-strategy) labels not yet criticised."""
        annotation = self.config.base_annotation
        todo = []
        for it in items:
            key = ("critique", critic, strategy, annotator, annotation, it.item_id)
            if self.store.get(key) is None:
                ann = self.annotation(annotator, annotation, it)
                if ann is not None:  # a failed label needs no critic: it is reviewed
                    todo.append(ann)
        if not todo:
            return
        cand = self.candidate(critic)
        task = _task(self.template, annotator, critic)
        value = CRITIC_STRATEGIES[strategy].value

        def call(ann: annotation_pb2.Annotation) -> Callable[[], Awaitable[CallRecord]]:
            async def run() -> CallRecord:
                base = CallRecord(
                    "critique",
                    critic,
                    strategy,
                    ann.item.item_id,
                    annotator=annotator,
                    annotation=annotation,
                    phase=phase,
                )
                try:
                    r = await cand.critic.critique(task, ann, value)
                except Exception as exc:  # recorded; eps 0.5 in the metrics
                    return _failed(base, exc)
                eps = min(1.0, max(0.0, float(r.eps)))
                return _with_usage(base, r.usage, r.attempts, eps=eps)

            return run

        await self._timed("critique", critic, strategy, phase, [call(a) for a in todo])


def _failed(base: CallRecord, exc: Exception) -> CallRecord:
    # Only the type: a message may quote model output about the item.
    return replace(base, error=type(exc).__name__)


def _with_usage(base: CallRecord, usage: Any, attempts: int, **values: Any) -> CallRecord:
    return replace(
        base,
        prompt_tokens=int(usage.prompt_tokens),
        completion_tokens=int(usage.completion_tokens),
        latency_ms=float(usage.latency_ms),
        attempts=int(attempts),
        **values,
    )


def seconds_per_call(phases: Sequence[PhaseRecord]) -> dict[CallKey, float]:
    """Measured wall seconds per call of every (role, model, strategy) with phases."""
    wall: dict[CallKey, float] = {}
    calls: dict[CallKey, int] = {}
    for p in phases:
        key = CallKey(p.role, p.model, p.strategy)
        wall[key] = wall.get(key, 0.0) + p.wall_s
        calls[key] = calls.get(key, 0) + p.n_calls
    return {k: wall[k] / calls[k] for k in wall if calls[k] > 0}
