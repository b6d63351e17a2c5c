"""Fitting the models of a Table-3 run: one job per method, budget, seed and grid point.

A job builds the method's training set (sampling ``delta`` as the production
sampler's batch mode does), trains a fresh model and scores it on the
validation and test sets. :class:`FitExecutor` runs jobs in this process or in
spawned worker processes; :func:`select_best` keeps a search's best grid point.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from services.experiments.annotations import MachineAnnotations
from services.experiments.methods import METHODS_BY_KEY, Method, TableConfig
from services.experiments.results import MethodRun
from services.trainer.data import ActDataset, Inputs, LabelledSet
from services.trainer.fit import TrainConfig, accuracy, new_state, train
from services.trainer.hpo import Candidate, grid
from services.trainer.loss import Objective
from services.trainer.networks import build_network
from services.trainer.sampling import Rule, SampledReviews, sample_reviews


@dataclass
class FitContext:
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
        """A freshly initialised downstream model (seed torch first for reproducible weights)."""
        return build_network(self.model, self.num_classes, self.config.model_params)


@dataclass(frozen=True, slots=True)
class FitJob:
    """One model to train: a method (key) at a budget and seed, at one grid point.

    ``candidate`` and ``beta`` None mean the defaults (the model's learning
    rate, the largest lambda, the first beta); ``search`` marks grid-search trials.
    """

    method: str
    budget: float
    seed: int
    search: bool
    candidate: Candidate | None = None
    beta: float | None = None


def _act_dataset(
    ctx: FitContext, method: Method, budget: float, seed: int, beta: float
) -> tuple[ActDataset, SampledReviews | None]:
    """The method's training set and, for sampled rows, the review draws behind it."""
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
        ctx.config.sampling(method.rule, budget, seed, beta),
        ids=ctx.train_ids,
        task_id=f"table3/{ctx.dataset}",
        trim=method.rule in ctx.config.trim_rules,
    )
    data = ActDataset.from_arrays(ctx.train_inputs, machine, human, reviews.delta, reviews.pi, k)
    return data, reviews


def _run_job(ctx: FitContext, job: FitJob) -> tuple[MethodRun, Candidate, float]:
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


def search_jobs(ctx: FitContext, method: Method, budget: float, seed: int) -> list[FitJob]:
    """One job per grid point: learning rate x lambda (ACT losses) x beta (exponential)."""
    betas = ctx.config.betas if method.rule is Rule.EXPONENTIAL else ctx.config.betas[:1]
    return [
        FitJob(method.key, budget, seed, True, cand, beta)
        for beta in betas
        for cand in grid(method.kind, ctx.learning_rates, ctx.config.lambdas)
    ]


def select_best(
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


_WORKER_CTX: FitContext | None = None


def _worker_init(ctx: FitContext, threads: int) -> None:
    global _WORKER_CTX
    torch.set_num_threads(threads)
    _WORKER_CTX = ctx


def _worker_run(job: FitJob) -> tuple[MethodRun, Candidate, float]:
    assert _WORKER_CTX is not None
    return _run_job(_WORKER_CTX, job)


class FitExecutor:
    """Runs jobs in this process or in a pool of spawned single-threaded workers.

    On a 2-core CPU two single-threaded processes train these small models
    faster than one process with two intra-op threads (the convolutions are
    too small to split well), and jobs are independent.
    """

    def __init__(self, ctx: FitContext, workers: int, threads: int | None) -> None:
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

    def map(self, jobs: Sequence[FitJob]) -> Iterator[tuple[MethodRun, Candidate, float]]:
        """Run ``jobs``; results come in the order of ``jobs``."""
        if self.pool is None:
            return (_run_job(self.ctx, job) for job in jobs)
        return iter(self.pool.map(_worker_run, jobs))

    def close(self) -> None:
        """Shut the worker pool down (no-op in-process)."""
        if self.pool is not None:
            self.pool.shutdown()


def describe_run(dataset: str, run: MethodRun, searched: int = 1) -> str:
    """A progress line for a trained model (``searched``: grid points it was the best of)."""
    chose = f" (best of {searched})" if searched > 1 else ""
    return (
        f"{dataset} budget {100 * run.budget:5.2f}% seed {run.seed} {run.method:<14}"
        f" test {100 * run.test_accuracy:6.2f}%  val {100 * run.val_accuracy:6.2f}%"
        f"  lr {run.learning_rate:g}  lambda {run.power_lambda:g}"
        f"{f'  beta {run.beta:g}' if run.beta is not None else ''}  reviewed {run.reviewed}"
        f"  {run.seconds:5.1f}s{chose}"
    )
