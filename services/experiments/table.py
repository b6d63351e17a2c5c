"""The paper's Table 3 for one data set: six ways to train on (partly) machine-labelled data.

Lin et al., "ACT as Human" (NeurIPS 2025), section 5.2, Table 3: test
accuracy (mean +- std over 5 runs) of a downstream model trained on

* human-only: every training item with its human label (the reference);
* machine-only: every item with its machine label;
* ACT data - CE: human label where reviewed (thresholding), machine label
  otherwise, plain cross-entropy;
* ACT data - ACT norm./exp./thre. loss: eq. 8 with power tuning (appendix E)
  under the normalization, exponential-weighting and thresholding rules;

and the human-machine and human-ACT gaps at the "ideal" human budget (the
annotator's error rate). Optionally a seventh row trains on the reviewed
items alone, which shows what the machine labels add.

Protocol (paper, appendix A.3): the learning rate and, for ACT losses, lambda
in ``[0.6, 0.7, 0.8, 0.9, 1.0]`` are searched; selection uses accuracy on a
human-labelled validation set only (:mod:`services.trainer.hpo`). The
sampling draws ``delta`` exactly as the production sampler's batch mode
(:mod:`services.trainer.sampling`); run ``s`` uses seed ``s`` for the model
initialisation, the batch order and the Bernoulli draws.

The rows and settings are in :mod:`services.experiments.methods`, what was
measured in :mod:`services.experiments.results`, the training jobs in
:mod:`services.experiments.fitting`; this module runs a table end to end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from services.core.metrics import accuracy as label_accuracy
from services.core.metrics import budget_curve, ideal_budget
from services.experiments.annotations import (
    AnnotationProvider,
    MachineAnnotations,
    fewshot_provider,
)
from services.experiments.data import DEFAULT_MODELS, ExperimentData, load_experiment_data
from services.experiments.fitting import (
    FitContext,
    FitExecutor,
    FitJob,
    clear_caches,
    describe_run,
    search_jobs,
    select_best,
)
from services.experiments.methods import (
    METHODS_BY_KEY,
    REVIEWED_ONLY,
    TABLE3_METHODS,
    Method,
    Progress,
    TableConfig,
)
from services.experiments.results import MethodRun, TableResult
from services.trainer.data import LabelledSet
from services.trainer.features import prepare_inputs
from services.trainer.fit import TrainConfig
from services.trainer.hpo import Candidate
from services.trainer.networks import network_spec
from services.trainer.sampling import Rule


def _log(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def compute_table(
    data: ExperimentData,
    annotations: MachineAnnotations,
    *,
    seeds: int = 5,
    budget: float | None = None,
    config: TableConfig | None = None,
    methods: Sequence[Method] | None = None,
    progress: Progress | None = None,
) -> TableResult:
    """Train every method for every seed and collect Table 3 (plus the budget curve).

    Hyper-parameters are searched on seed 0 (``search='first_seed'``) and reused
    for the other seeds and the budget curve, or searched on every seed.
    """
    cfg = config or TableConfig()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    model = cfg.model or DEFAULT_MODELS[data.name]
    spec = network_spec(model)
    human = data.train.labels
    if annotations.labels.shape != human.shape:
        raise ValueError("annotations do not match the training items")
    ideal = ideal_budget(annotations.labels, human)
    b = ideal if budget is None else float(budget)
    if not 0.0 <= b <= 1.0:
        raise ValueError("budget must be a fraction in [0, 1]")
    curve = budget_curve(annotations.labels, human, annotations.eps)
    n = len(human)
    aqg_b = float(curve[min(n, math.floor(b * n + 1e-9))])
    corrected_acc = label_accuracy(annotations.labels, human) + aqg_b * ideal
    _log(progress, f"{data.name}: preparing inputs for {model} ({n} train items)")
    base = TrainConfig(
        learning_rate=spec.learning_rate,
        epochs=cfg.epochs if cfg.epochs is not None else spec.epochs,
        batch_size=cfg.batch_size if cfg.batch_size is not None else spec.batch_size,
        device=cfg.device,
    )
    ctx = FitContext(
        dataset=data.name,
        num_classes=data.num_classes,
        train_ids=data.train.ids,
        human=human,
        annotations=annotations,
        train_inputs=prepare_inputs(spec.input_kind, _raw(data.train.raw)),
        validation=LabelledSet.from_arrays(
            prepare_inputs(spec.input_kind, _raw(data.validation.raw)), data.validation.labels
        ),
        test=LabelledSet.from_arrays(
            prepare_inputs(spec.input_kind, _raw(data.test.raw)), data.test.labels
        ),
        model=model,
        config=cfg,
        base=base,
        learning_rates=cfg.learning_rates or (spec.learning_rate,),
    )
    rows = list(methods) if methods is not None else default_rows(cfg)

    def searchable(method: Method) -> bool:
        return (
            len(ctx.learning_rates) > 1
            or (method.is_act_loss and len(cfg.lambdas) > 1)
            or (method.rule is Rule.EXPONENTIAL and len(cfg.betas) > 1)
        )

    chosen: dict[str, tuple[Candidate, float]] = {}
    runs: list[MethodRun] = []
    clear_caches()
    executor = FitExecutor(ctx, cfg.workers, cfg.threads)
    try:
        search_seeds = range(seeds) if cfg.search == "every_seed" else range(min(seeds, 1))
        first: list[FitJob] = []
        for s in search_seeds:
            for m in rows:
                first += (
                    search_jobs(ctx, m, b, s) if searchable(m) else [FitJob(m.key, b, s, False)]
                )
        results: list[tuple[MethodRun, Candidate, float]] = []
        for item in executor.map(first):
            results.append(item)
            if item[0].searched:
                _log(progress, "  trial " + describe_run(data.name, item[0]))
        for s in search_seeds:
            for m in rows:
                group = [r for r in results if r[0].method == m.key and r[0].seed == s]
                run, cand, beta = select_best(group)
                runs.append(run)
                if s == 0:
                    chosen[m.key] = (cand, beta)
                _log(progress, describe_run(data.name, run, len(group)))
        later = (
            []
            if cfg.search == "every_seed"
            else [
                FitJob(m.key, b, s, False, *chosen.get(m.key, (None, None)))
                for s in range(1, seeds)
                for m in rows
            ]
        )
        if cfg.plus_budget is not None:
            plus = min(1.0, b + cfg.plus_budget)
            later += [
                FitJob(key, plus, s, False, *chosen.get(key, (None, None)))
                for s in range(seeds)
                for key in cfg.plus_methods
                if key in {m.key for m in rows}
            ]
        for cb in cfg.curve_budgets:
            for key in cfg.curve_methods:
                for s in range(cfg.curve_seeds):
                    if math.isclose(cb, b, abs_tol=1e-12) and s < seeds:
                        continue  # already trained for the table
                    later.append(FitJob(key, cb, s, False, *chosen.get(key, (None, None))))
        for run, _, _ in executor.map(later):
            runs.append(run)
            _log(progress, describe_run(data.name, run))
    finally:
        executor.close()
    return TableResult(
        dataset=data.name,
        model=model,
        n_train=n,
        n_val=len(data.validation),
        n_test=len(data.test),
        seeds=seeds,
        budget=b,
        ideal_budget=ideal,
        annotator_accuracy=label_accuracy(annotations.labels, human),
        annotator=annotations.annotator,
        critic=annotations.critic,
        seed_size=annotations.seed_size,
        aqg_at_budget=aqg_b,
        corrected_accuracy=corrected_acc,
        aqg_curve=[float(v) for v in curve],
        runs=runs,
        methods=rows,
        config=cfg,
        seconds=time.perf_counter() - started,
        epochs=base.epochs,
        batch_size=base.batch_size,
        learning_rates=ctx.learning_rates,
    )


def default_rows(cfg: TableConfig) -> list[Method]:
    """Table 3's rows, reviewed-only (unless turned off) and the config's extra rows,
    or exactly ``cfg.rows`` when given."""
    unknown = [k for k in (*cfg.extra_methods, *(cfg.rows or ())) if k not in METHODS_BY_KEY]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {sorted(METHODS_BY_KEY)}")
    if cfg.rows is not None:
        if "human_only" not in cfg.rows:
            raise ValueError("rows must include human_only: every gap is measured against it")
        return [METHODS_BY_KEY[k] for k in dict.fromkeys(cfg.rows)]
    rows = [*TABLE3_METHODS, *((REVIEWED_ONLY,) if cfg.include_reviewed_only else ())]
    return rows + [METHODS_BY_KEY[k] for k in cfg.extra_methods if METHODS_BY_KEY[k] not in rows]


def _raw(raw: Any) -> Any:
    return list(raw) if isinstance(raw, tuple) else raw


def table_result(
    dataset: str,
    seeds: int = 5,
    n_train: int | None = None,
    budget: float | None = None,
    *,
    config: TableConfig | None = None,
    annotations: AnnotationProvider | MachineAnnotations | None = None,
    data: ExperimentData | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    progress: Progress | None = None,
) -> TableResult:
    """Table 3 for ``fashion`` or ``spam`` as a :class:`TableResult`.

    ``budget=None`` uses the ideal budget (the annotator's error rate on the
    training items, section 5.2). ``.summary()`` gives the flat metrics (gaps
    in accuracy points, ``<dataset>_gap_human_act_thre`` ...);
    :func:`services.experiments.report.write_report` writes the Markdown table,
    JSON and plots.
    """
    started = time.perf_counter()
    data = data or load_experiment_data(dataset, n_train, n_val=n_val, n_test=n_test)
    if isinstance(annotations, MachineAnnotations):
        machine = annotations
    else:
        provider = annotations or fewshot_provider()
        _log(progress, f"{data.name}: annotating {len(data.train)} items with the few-shot pair")
        machine = provider(data)
    _log(
        progress,
        f"{data.name}: annotator {machine.annotator or '?'} accuracy "
        f"{100 * label_accuracy(machine.labels, data.train.labels):.2f}%, critic "
        f"{machine.critic or '?'}",
    )
    result = compute_table(
        data, machine, seeds=seeds, budget=budget, config=config, progress=progress
    )
    result.seconds = time.perf_counter() - started
    return result
