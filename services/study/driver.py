"""The study from start to end: items, calibration, sizing, phases, results.

Items are a prefix of one seeded order of SpamAssassin (``hash_order``, as
``act select-models`` orders its evaluation items), so the calibration items
are the first items of every larger subset and their calls are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from services.study.metrics import StudyData, assemble
from services.study.plan import (
    CallKey,
    Sizing,
    StudyConfig,
    chunk_fits,
    critique_pairs,
    critique_seconds_per_item,
    size_run,
)
from services.study.records import RecordStore
from services.study.run import Runner, Say, seconds_per_call, study_task
from services.study.servers import ServerPool


@dataclass(frozen=True)
class Outcome:
    """A finished run: the data for the report, how it was sized, how long it took."""

    data: StudyData
    sizing: Sizing
    wall_s: float
    server_start_s: tuple[float, ...]
    #: Model calls found in the records when the run started (a resumed run
    #: reuses them instead of asking the models again).
    reused_calls: int = 0
    #: Wall seconds of every recorded phase, this run's and earlier runs': the
    #: time the whole grid cost the models, however many runs it took.
    model_call_s: float = 0.0


def records_path(state_dir: Path, config: StudyConfig) -> Path:
    """The run's JSONL, named by what changes a call's answer (so a resume never mixes runs)."""
    what = {"seed": config.seed, "max_text_chars": config.max_text_chars, "v": 1}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
    return state_dir / f"calls-{digest}.jsonl"


def fill_missing(
    config: StudyConfig, measured: dict[CallKey, float], cells: list[CallKey]
) -> dict[CallKey, float]:
    """Measured seconds per call, with unmeasured cells charged the slowest of their model.

    A cell has no measurement when every calibration label it would judge
    failed; charging it the model's slowest strategy keeps the projection on
    the long side.
    """
    out = dict(measured)
    fallback = max(measured.values(), default=60.0)
    for key in cells:
        if key not in out:
            same = [v for k, v in measured.items() if k.model == key.model]
            out[key] = max(same, default=fallback)
    return out


def grid_cells(config: StudyConfig) -> list[CallKey]:
    """Every (role, model, strategy) the grid runs."""
    cells = [
        CallKey("annotate", m, a) for m in config.profiles for a in config.annotation_strategies
    ]
    cells += [CallKey("critique", m, c) for m in config.profiles for c in config.critic_strategies]
    return cells


async def _execute(config: StudyConfig, pool: ServerPool, store: RecordStore, say: Say) -> Outcome:
    from services.fewshot.pools import spam_pool
    from services.fewshot.seed import hash_order

    t0 = time.monotonic()
    pool_data = spam_pool()
    order = hash_order(pool_data.ids, config.seed)
    template = study_task(pool_data.label_names)
    runner = Runner(config, pool, store, template, say)
    try:
        k = min(config.calibration_items, len(order))
        calib = pool_data.items(order[:k], template.task_id)
        say(f"calibration: {k} items, every model and strategy (self-criticism)")
        for m in config.profiles:
            for a in config.annotation_strategies:
                await runner.annotate(m, a, calib, "calibration")
            for c in config.critic_strategies:
                await runner.critique(m, c, m, calib, "calibration")
        speeds = fill_missing(config, seconds_per_call(store.phases), grid_cells(config))
        sizing = size_run(
            config,
            speeds,
            elapsed_s=time.monotonic() - t0,
            overhead_s=config.reserve_s,
            available=len(order),
        )
        say(f"sizing: {sizing.reason}")
        chosen = order[: sizing.n_items]
        items = pool_data.items(chosen, template.task_id)
        human = np.asarray([pool_data.label_of(int(i)) for i in chosen], dtype=np.int64)
        for m in config.profiles:
            for a in config.annotation_strategies:
                await runner.annotate(m, a, items, "run")
        base = config.base_model or _most_accurate(config, store, items, human)
        say(f"base annotator: {base} ({config.base_annotation})")
        done = await _critique_in_chunks(config, runner, store, items, base, t0, say)
        if done < len(items):
            sizing = replace(
                sizing,
                n_items=done,
                reason=f"{sizing.reason}; the critiques ran slower than calibrated, so the "
                f"run stopped after {done} items to stay in the budget",
            )
        items, human = items[:done], human[:done]
    finally:
        await runner.close()
    data = assemble(config, store, [it.item_id for it in items], human, base)
    return Outcome(data, sizing, time.monotonic() - t0, tuple(pool.start_seconds))


async def _critique_in_chunks(
    config: StudyConfig,
    runner: Runner,
    store: RecordStore,
    items: list[Any],
    base: str,
    t0: float,
    say: Say,
) -> int:
    """Every critic and strategy on the pairs, chunk by chunk; how many items were done.

    Before each chunk after the first the speed is measured again from every
    phase so far; a chunk that would end past the budget is not started
    (with ``--items`` every chunk runs).
    """
    pairs = critique_pairs(config, base)
    budget_s = 60.0 * config.budget_minutes
    done = 0
    for start in range(0, len(items), config.chunk_items):
        part = items[start : start + config.chunk_items]
        if start > 0 and config.items is None:
            speeds = fill_missing(config, seconds_per_call(store.phases), grid_cells(config))
            per_item = critique_seconds_per_item(config, speeds)
            if not chunk_fits(
                time.monotonic() - t0, len(part), per_item, budget_s, config.reserve_s
            ):
                say(f"stopping after {done} items: {len(part)} more would end past the budget")
                break
        say(f"critiques of items {start + 1}-{start + len(part)} of {len(items)}")
        for critic in config.profiles:
            for c in config.critic_strategies:
                for annotator, who in pairs:
                    if who == critic:
                        await runner.critique(critic, c, annotator, part, "run")
        done = start + len(part)
    return done


def _most_accurate(config: StudyConfig, store: RecordStore, items: Any, human: Any) -> str:
    """The model whose base-strategy labels agree most with the human ones (ties: order)."""

    def acc(m: str) -> float:
        got = [
            store.get(("annotate", m, config.base_annotation, "", "", it.item_id)) for it in items
        ]
        labels = np.array([r.label if r is not None else -1 for r in got], dtype=np.int64)
        return float(np.mean(labels == human))

    return max(config.profiles, key=acc)


def run_study(config: StudyConfig, state_dir: Path, say: Say) -> Outcome:
    """Run (or resume) the study; servers are started and stopped here."""
    store = RecordStore(records_path(state_dir, config))
    reused = len(store.calls)
    say(f"raw per-call results: {store.path} ({reused} calls kept from earlier runs)")
    with ServerPool(state_dir / "servers", config.servers, say) as pool:
        outcome = asyncio.run(_execute(config, pool, store, say))
    outcome = replace(
        outcome,
        reused_calls=reused,
        model_call_s=sum(p.wall_s for p in store.phases),
    )
    (state_dir / "last-run.json").write_text(
        json.dumps({"sizing": asdict(outcome.sizing), "wall_s": outcome.wall_s}, indent=2)
    )
    return outcome
