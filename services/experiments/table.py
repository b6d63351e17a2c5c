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
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from services.evaluation.metrics import accuracy as label_accuracy
from services.evaluation.metrics import budget_curve, ideal_budget
from services.experiments.annotations import (
    AnnotationProvider,
    MachineAnnotations,
    fewshot_provider,
)
from services.experiments.data import DEFAULT_MODELS, ExperimentData, load_experiment_data
from services.trainer.data import ActDataset, Inputs, LabelledSet
from services.trainer.features import prepare_inputs
from services.trainer.fit import TrainConfig, accuracy, new_state, train
from services.trainer.hpo import PAPER_LAMBDA_GRID, Candidate, grid
from services.trainer.loss import LossKind, Objective
from services.trainer.models import build_model, model_spec
from services.trainer.sampling import Rule, SampledReviews, sample_reviews

Progress = Callable[[str], None]
SearchScope = Literal["first_seed", "every_seed"]


@dataclass(frozen=True, slots=True)
class Method:
    """A row of Table 3: which labels, which loss, which sampling rule."""

    key: str
    label: str
    kind: LossKind
    rule: Rule | None = None  # sampling rule of the ACT data (None: no sampling)
    review_all: bool = False  # human-only reference: every item human-labelled

    @property
    def is_act_loss(self) -> bool:
        """True for the ACT-loss rows (lambda is searched)."""
        return self.kind is LossKind.ACT


HUMAN_ONLY = Method(
    "human_only", "Human only - Cross-entropy loss", LossKind.HUMAN_ONLY, review_all=True
)
MACHINE_ONLY = Method("machine_only", "Machine only - Cross-entropy loss", LossKind.MACHINE_ONLY)
ACT_DATA_CE = Method(
    "act_data_ce", "ACT data - Cross-entropy loss", LossKind.ACT_DATA_CE, Rule.THRESHOLD
)
ACT_NORM = Method("act_norm", "ACT data - ACT norm. loss", LossKind.ACT, Rule.NORMALIZATION)
ACT_EXP = Method("act_exp", "ACT data - ACT exp. loss", LossKind.ACT, Rule.EXPONENTIAL)
ACT_THRE = Method("act_thre", "ACT data - ACT thre. loss", LossKind.ACT, Rule.THRESHOLD)
REVIEWED_ONLY = Method(
    "reviewed_only", "Reviewed items only - Cross-entropy loss", LossKind.HUMAN_ONLY, Rule.THRESHOLD
)

#: The rows of the paper's Table 3, in its order.
TABLE3_METHODS: tuple[Method, ...] = (
    HUMAN_ONLY,
    MACHINE_ONLY,
    ACT_DATA_CE,
    ACT_NORM,
    ACT_EXP,
    ACT_THRE,
)
METHODS_BY_KEY: dict[str, Method] = {m.key: m for m in (*TABLE3_METHODS, REVIEWED_ONLY)}


@dataclass(frozen=True)
class TableConfig:
    """How a table is computed (defaults: the paper's protocol, scaled to a CPU)."""

    model: str | None = None  # downstream model; None = the data set's default
    model_params: dict[str, str] = field(default_factory=dict)
    epochs: int | None = None  # None = the model's default
    batch_size: int | None = None
    #: Learning rates searched; None = only the model's default (no lr search).
    learning_rates: tuple[float, ...] | None = None
    #: lambda grid of the ACT losses (appendix A.3); a single value = no search.
    lambdas: tuple[float, ...] = PAPER_LAMBDA_GRID
    #: Search on the first seed and reuse its choice (cheap), or on every seed.
    search: SearchScope = "first_seed"
    #: Exponential-weighting steepness; appendix A.3 "tries beta = 10 or 100", so with
    #: more than one value beta is selected on the validation set like lambda.
    betas: tuple[float, ...] = (10.0, 100.0)
    alpha_method: Literal["quantile", "solve"] = "quantile"  # appendix A.3: quantile
    pi_min: float = 0.0
    #: Rules whose draws are trimmed to ``sum delta <= B`` like the sampler service does.
    #: Default: exponential and thresholding (the paper sets their parameters "such that
    #: sum delta <= B"), not normalization, which the paper takes from active
    #: M-estimation (refs. 17, 20): independent draws, ``E[sum delta] = B``.
    trim_rules: tuple[Rule, ...] = (Rule.EXPONENTIAL, Rule.THRESHOLD)
    include_reviewed_only: bool = True
    #: Budgets (fractions) of the accuracy-vs-budget curve; empty = no curve.
    curve_budgets: tuple[float, ...] = ()
    curve_methods: tuple[str, ...] = ("act_thre", "act_exp", "act_norm", "act_data_ce")
    curve_seeds: int = 1
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None = torch's default (1 in workers)
    #: Processes training in parallel (1 = in this process).
    workers: int = 1


@dataclass(frozen=True, slots=True)
class MethodRun:
    """One trained model: a method at a budget and seed."""

    method: str
    seed: int
    budget: float
    test_accuracy: float
    val_accuracy: float
    learning_rate: float
    power_lambda: float
    beta: float | None  # exponential weighting only
    reviewed: int
    min_pi_reviewed: float
    seconds: float
    searched: bool


@dataclass
class TableResult:
    """Everything a Table-3 run measured."""

    dataset: str
    model: str
    n_train: int
    n_val: int
    n_test: int
    seeds: int
    budget: float  # fraction of the training items
    ideal_budget: float
    annotator_accuracy: float
    annotator: str
    critic: str
    seed_size: int
    aqg_at_budget: float
    corrected_accuracy: float  # annotation accuracy of the ACT data at the budget
    aqg_curve: list[float]  # AQG at budgets 0..N (services.evaluation.metrics.budget_curve)
    runs: list[MethodRun]
    methods: list[Method]
    config: TableConfig
    seconds: float = 0.0
    #: Resolved training settings (the config's None = the model's defaults).
    epochs: int = 0
    batch_size: int = 0
    learning_rates: tuple[float, ...] = ()

    def accuracies(self, method: str, budget: float | None = None) -> list[float]:
        """Test accuracies (%) of a method over seeds, at the table's budget by default."""
        b = self.budget if budget is None else budget
        return [
            100.0 * r.test_accuracy
            for r in self.runs
            if r.method == method and math.isclose(r.budget, b, abs_tol=1e-12)
        ]

    def mean(self, method: str, budget: float | None = None) -> float:
        """Mean test accuracy (%) over seeds."""
        values = self.accuracies(method, budget)
        return statistics.fmean(values) if values else float("nan")

    def std(self, method: str, budget: float | None = None) -> float:
        """Sample standard deviation (ddof = 1) of the test accuracy (%) over seeds."""
        values = self.accuracies(method, budget)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def gap(self, method: str) -> float:
        """Human-only minus ``method`` (accuracy points), mean over seeds."""
        return self.mean(HUMAN_ONLY.key) - self.mean(method)

    def summary(self, prefix: str | None = None) -> dict[str, float]:
        """Flat metrics, e.g. ``fashion_gap_human_act_thre`` (accuracy points, % for budgets)."""
        p = f"{prefix or self.dataset}_"
        out: dict[str, float] = {
            f"{p}gap_human_act_thre": self.gap(ACT_THRE.key),
            f"{p}gap_human_act_exp": self.gap(ACT_EXP.key),
            f"{p}gap_human_act_norm": self.gap(ACT_NORM.key),
            f"{p}gap_human_machine": self.gap(MACHINE_ONLY.key),
            f"{p}gap_human_act_data_ce": self.gap(ACT_DATA_CE.key),
            # The paper's "Human-ACT performance gap": the better of exp. and thre.
            f"{p}gap_human_act": min(self.gap(ACT_EXP.key), self.gap(ACT_THRE.key)),
            f"{p}budget": 100.0 * self.budget,
            f"{p}annotator_accuracy": 100.0 * self.annotator_accuracy,
            f"{p}aqg_at_budget": 100.0 * self.aqg_at_budget,
            f"{p}seconds": self.seconds,
        }
        for m in self.methods:
            out[f"{p}acc_{m.key}_mean"] = self.mean(m.key)
            out[f"{p}acc_{m.key}_std"] = self.std(m.key)
        return out


def _log(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


@dataclass
class _Context:
    """What a training job needs (picklable: sent once to each worker process)."""

    dataset: str
    num_classes: int
    train_ids: tuple[str, ...]
    human: np.ndarray
    annotations: MachineAnnotations
    train_inputs: Inputs
    validation: LabelledSet
    test: LabelledSet
    model: str
    config: TableConfig
    base: TrainConfig
    learning_rates: tuple[float, ...]

    def make_model(self) -> nn.Module:
        return build_model(self.model, self.num_classes, self.config.model_params)


@dataclass(frozen=True, slots=True)
class _Job:
    method: str
    budget: float
    seed: int
    search: bool
    candidate: Candidate | None = None
    beta: float | None = None


def _act_dataset(
    ctx: _Context, method: Method, budget: float, seed: int, beta: float
) -> tuple[ActDataset, SampledReviews | None]:
    human, machine, k = ctx.human, ctx.annotations.labels, ctx.num_classes
    n = len(human)
    if method.review_all:
        return ActDataset.from_arrays(
            ctx.train_inputs, machine, human, np.ones(n, bool), np.ones(n), k
        ), None
    if method.rule is None:  # machine-only: nothing reviewed
        return ActDataset.from_arrays(
            ctx.train_inputs, machine, human, np.zeros(n, bool), np.zeros(n), k
        ), None
    reviews = sample_reviews(
        ctx.annotations.eps,
        method.rule,
        budget,
        seed=seed,
        ids=ctx.train_ids,
        task_id=f"table3/{ctx.dataset}",
        beta=beta,
        pi_min=ctx.config.pi_min,
        alpha_method=ctx.config.alpha_method,
        trim=method.rule in ctx.config.trim_rules,
    )
    data = ActDataset.from_arrays(ctx.train_inputs, machine, human, reviews.delta, reviews.pi, k)
    return data, reviews


def _run_job(ctx: _Context, job: _Job) -> tuple[MethodRun, Candidate, float]:
    """Train one model (a method, budget, seed and one hyper-parameter point) and score it.

    A search is a set of such jobs, one per grid point, run in parallel; the
    parent keeps the one with the best validation accuracy. Every job seeds
    torch with the run's seed before building the model, so all grid points
    of a run start from the same weights (as :func:`~services.trainer.hpo.grid_search`).
    """
    started = time.perf_counter()
    method = METHODS_BY_KEY[job.method]
    beta = job.beta if job.beta is not None else ctx.config.betas[0]
    data, reviews = _act_dataset(ctx, method, job.budget, job.seed, beta)
    cand = job.candidate or Candidate(
        ctx.learning_rates[0], ctx.config.lambdas[-1] if method.is_act_loss else 1.0
    )
    torch.manual_seed(job.seed)
    config = replace(ctx.base, seed=job.seed, learning_rate=cand.learning_rate)
    state = train(
        data,
        Objective(method.kind, cand.power_lambda),
        config,
        new_state(ctx.make_model(), config),
    )
    run = MethodRun(
        method=method.key,
        seed=job.seed,
        budget=job.budget,
        test_accuracy=accuracy(state.model, ctx.test, device=config.device),
        val_accuracy=accuracy(state.model, ctx.validation, device=config.device),
        learning_rate=cand.learning_rate,
        power_lambda=cand.power_lambda if method.is_act_loss else 1.0,
        beta=beta if method.rule is Rule.EXPONENTIAL else None,
        reviewed=int(data.reviewed) if not method.review_all else len(data),
        min_pi_reviewed=reviews.min_pi_reviewed if reviews is not None else 1.0,
        seconds=time.perf_counter() - started,
        searched=job.search,
    )
    return run, cand, beta


def _search_jobs(ctx: _Context, method: Method, budget: float, seed: int) -> list[_Job]:
    """One job per grid point: learning rate x lambda (ACT losses) x beta (exponential)."""
    betas = ctx.config.betas if method.rule is Rule.EXPONENTIAL else ctx.config.betas[:1]
    return [
        _Job(method.key, budget, seed, True, cand, beta)
        for beta in betas
        for cand in grid(method.kind, ctx.learning_rates, ctx.config.lambdas)
    ]


def _select(
    results: Sequence[tuple[MethodRun, Candidate, float]],
) -> tuple[MethodRun, Candidate, float]:
    """The grid point with the best validation accuracy (ties: the earlier; NaN never wins)."""
    best = results[0]
    for item in results[1:]:
        score = item[0].val_accuracy
        best_score = best[0].val_accuracy
        if not math.isnan(score) and (math.isnan(best_score) or score > best_score):
            best = item
    return best


_WORKER_CTX: _Context | None = None


def _worker_init(ctx: _Context, threads: int) -> None:
    global _WORKER_CTX
    torch.set_num_threads(threads)
    _WORKER_CTX = ctx


def _worker_run(job: _Job) -> tuple[MethodRun, Candidate, float]:
    assert _WORKER_CTX is not None
    return _run_job(_WORKER_CTX, job)


class _Executor:
    """Runs jobs in this process or in a pool of spawned single-threaded workers.

    On a 2-core CPU two single-threaded processes train these small models
    faster than one process with two intra-op threads (the convolutions are
    too small to split well), and jobs are independent.
    """

    def __init__(self, ctx: _Context, workers: int, threads: int | None) -> None:
        self.ctx = ctx
        self.pool: Any = None
        if workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(ctx, threads or 1),
            )

    def map(self, jobs: Sequence[_Job]) -> Iterator[tuple[MethodRun, Candidate, float]]:
        if self.pool is None:
            return (_run_job(self.ctx, job) for job in jobs)
        return iter(self.pool.map(_worker_run, jobs))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


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
    spec = model_spec(model)
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
    ctx = _Context(
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
    rows = (
        list(methods)
        if methods is not None
        else [
            *TABLE3_METHODS,
            *((REVIEWED_ONLY,) if cfg.include_reviewed_only else ()),
        ]
    )

    def searchable(method: Method) -> bool:
        return (
            len(ctx.learning_rates) > 1
            or (method.is_act_loss and len(cfg.lambdas) > 1)
            or (method.rule is Rule.EXPONENTIAL and len(cfg.betas) > 1)
        )

    chosen: dict[str, tuple[Candidate, float]] = {}
    runs: list[MethodRun] = []
    executor = _Executor(ctx, cfg.workers, cfg.threads)
    try:
        search_seeds = range(seeds) if cfg.search == "every_seed" else range(min(seeds, 1))
        first: list[_Job] = []
        for s in search_seeds:
            for m in rows:
                first += _search_jobs(ctx, m, b, s) if searchable(m) else [_Job(m.key, b, s, False)]
        results: list[tuple[MethodRun, Candidate, float]] = []
        for item in executor.map(first):
            results.append(item)
            if item[0].searched:
                _log(progress, "  trial " + _describe(data.name, item[0]))
        for s in search_seeds:
            for m in rows:
                group = [r for r in results if r[0].method == m.key and r[0].seed == s]
                run, cand, beta = _select(group)
                runs.append(run)
                if s == 0:
                    chosen[m.key] = (cand, beta)
                _log(progress, _describe(data.name, run, len(group)))
        later = (
            []
            if cfg.search == "every_seed"
            else [
                _Job(m.key, b, s, False, *chosen.get(m.key, (None, None)))
                for s in range(1, seeds)
                for m in rows
            ]
        )
        for cb in cfg.curve_budgets:
            for key in cfg.curve_methods:
                for s in range(cfg.curve_seeds):
                    if math.isclose(cb, b, abs_tol=1e-12) and s < seeds:
                        continue  # already trained for the table
                    later.append(_Job(key, cb, s, False, *chosen.get(key, (None, None))))
        for run, _, _ in executor.map(later):
            runs.append(run)
            _log(progress, _describe(data.name, run))
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


def _describe(dataset: str, run: MethodRun, searched: int = 1) -> str:
    chose = f" (best of {searched})" if searched > 1 else ""
    return (
        f"{dataset} budget {100 * run.budget:5.2f}% seed {run.seed} {run.method:<14}"
        f" test {100 * run.test_accuracy:6.2f}%  val {100 * run.val_accuracy:6.2f}%"
        f"  lr {run.learning_rate:g}  lambda {run.power_lambda:g}"
        f"{f'  beta {run.beta:g}' if run.beta is not None else ''}  reviewed {run.reviewed}"
        f"  {run.seconds:5.1f}s{chose}"
    )


def _raw(raw: Any) -> Any:
    return list(raw) if isinstance(raw, tuple) else raw


def run_table(
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
    out_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Table 3 for ``fashion`` or ``spam``; returns flat metrics (gaps in accuracy points).

    Keys: ``<dataset>_gap_human_act_thre``, ``_gap_human_act_exp``,
    ``_gap_human_act_norm``, ``_gap_human_machine`` (human minus method, mean
    over seeds), ``_budget`` and ``_annotator_accuracy`` (percent), plus
    per-method means and standard deviations. ``budget=None`` uses the ideal
    budget (the annotator's error rate on the training items, section 5.2).
    With ``out_dir`` the Markdown table and the plots are written to
    ``out_dir/<dataset>/``.
    """
    result = table_result(
        dataset,
        seeds,
        n_train,
        budget,
        config=config,
        annotations=annotations,
        data=data,
        n_val=n_val,
        n_test=n_test,
        progress=progress,
    )
    if out_dir is not None:
        from services.experiments.report import write_report

        write_report(result, Path(out_dir) / result.dataset)
    return result.summary()


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
    """:func:`run_table` returning the full :class:`TableResult`."""
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
