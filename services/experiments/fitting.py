"""Fitting the models of a Table-3 run: one job per method, budget, seed and grid point.

A job builds the method's training set (sampling ``delta`` as the production
sampler's batch mode does), trains a fresh model and scores it on the
validation and test sets. :class:`FitExecutor` runs jobs in this process or in
spawned worker processes; :func:`select_best` keeps a search's best grid point.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from services.core.cdi import cdi_design
from services.core.cleaning import (
    PLC_THRESHOLDS,
    agreement_keep,
    confident_keep,
    progressive_correction,
)
from services.core.sampling import budget_count
from services.experiments.annotations import MachineAnnotations
from services.experiments.feedback import (
    FeedbackReviews,
    FitProba,
    critic_eps,
    cross_fitted_proba,
    feedback_reviews,
    fold_assignment,
)
from services.experiments.methods import METHODS_BY_KEY, Method, TableConfig
from services.experiments.pseudo import PseudoLabels, pseudo_labels
from services.experiments.results import MethodRun
from services.trainer.data import ActDataset, Inputs, LabelledSet, take
from services.trainer.fit import TrainConfig, accuracy, new_state, predict_proba, train
from services.trainer.hpo import Candidate, grid
from services.trainer.loss import LossKind, Objective, trust_from_eps
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
    if method.pseudo is not None:
        run = _pseudo(ctx, method, budget, seed)
        rows = np.flatnonzero(run.used)
        reviewed = run.reviewed[rows]
        return ActDataset.from_arrays(
            take(ctx.train_inputs, torch.as_tensor(rows)), run.labels[rows], human[rows],
            reviewed, reviewed.astype(np.float64), k,
        ), None  # fmt: skip
    if method.review_all:
        return ActDataset.from_arrays(
            ctx.train_inputs, machine, human, np.ones(n, bool), np.ones(n), k
        ), None
    if method.rule is None:  # machine-only: nothing reviewed
        data = ActDataset.from_arrays(
            ctx.train_inputs, machine, human, np.zeros(n, bool), np.zeros(n), k
        )
        return _cleaned(ctx, data, seed, method), None
    if method.rounds > 1:
        fed = _feedback(ctx, method, budget, seed)
        data = ActDataset.from_arrays(
            ctx.train_inputs, machine, human, fed.delta, fed.pi, k, trust=_trust(method, fed.score)
        )
        return _cleaned(ctx, data, seed, method), None
    if method.design == "cdi":
        rng = np.random.default_rng([seed, 0xCD1])
        d = cdi_design(ctx.annotations.eps, machine != human, budget * n, rng)
        return ActDataset.from_arrays(ctx.train_inputs, machine, human, d.delta, d.pi, k), None
    eps = critic_eps(method.critic, ctx.annotations.eps, machine, human, seed)
    reviews = sample_reviews(
        eps,
        ctx.config.sampling(method.rule, budget, seed, beta),
        ids=ctx.train_ids,
        task_id=f"table3/{ctx.dataset}",
        trim=method.rule in ctx.config.trim_rules,
    )
    data = ActDataset.from_arrays(
        ctx.train_inputs, machine, human, reviews.delta, reviews.pi, k, trust=_trust(method, eps)
    )
    return _cleaned(ctx, data, seed, method), reviews


def _min_pi(data: ActDataset) -> float:
    """The smallest review probability of a reviewed row (1.0 when none is reviewed)."""
    reviewed = data.pi[data.delta]
    return float(reviewed.min()) if reviewed.numel() else 1.0


def _trust(method: Method, eps: np.ndarray) -> np.ndarray | None:
    """``1 - eps`` for a method that weights machine labels by it, else None."""
    return trust_from_eps(eps) if method.trust else None


def _fit_proba(ctx: FitContext, seed: int) -> FitProba:
    """Training for cross-fitting: a fresh model, cross-entropy on the given labels."""
    config = replace(ctx.base, seed=seed, learning_rate=ctx.learning_rates[0])

    def fit_proba(train_index: np.ndarray, labels: np.ndarray, score_index: np.ndarray) -> Any:
        rows = torch.as_tensor(train_index)
        data = ActDataset.from_arrays(
            take(ctx.train_inputs, rows), labels[train_index], labels[train_index],
            np.zeros(train_index.size, bool), np.zeros(train_index.size), ctx.num_classes,
        )  # fmt: skip
        torch.manual_seed(seed)
        state = train(
            data, Objective(LossKind.MACHINE_ONLY), config, new_state(ctx.make_model(), config)
        )
        inputs = take(ctx.train_inputs, torch.as_tensor(score_index))
        return predict_proba(state.model, inputs, device=config.device).numpy()

    return fit_proba


#: Rows kept by a cleaning (labels after a correction), by (data, seed, cleaning,
#: labels): a row's grid points share them.
_PRUNE_CACHE: dict[tuple[str, int, str, bytes], np.ndarray] = {}


def _fingerprint(*arrays: np.ndarray) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.digest()


def clear_caches() -> None:
    """Forget cached reviews and prunings (a new table, or a test that needs a cold start)."""
    _PRUNE_CACHE.clear()
    _FEEDBACK_CACHE.clear()
    _PSEUDO_CACHE.clear()


def _cleaned(ctx: FitContext, data: ActDataset, seed: int, method: Method) -> ActDataset:
    """``data`` without the unreviewed rows the method's cleaning drops (none without one)."""
    if method.clean is None:
        return data
    labels = data.human_filled.numpy()
    delta = data.delta.numpy()
    key = (ctx.dataset, seed, method.clean, _fingerprint(labels, delta))
    if method.clean == "plc":
        if key not in _PRUNE_CACHE:
            _PRUNE_CACHE[key] = _corrected(ctx, labels, delta, seed)
        # Reviewed rows keep their machine label: the ACT loss needs it there.
        corrected = np.where(delta, data.machine.numpy(), _PRUNE_CACHE[key])
        return replace(data, machine=torch.as_tensor(corrected, dtype=torch.int64))
    if key not in _PRUNE_CACHE:
        fit = _fit_proba(ctx, seed)
        if method.clean == "confident":
            folds = fold_assignment(labels.size, ctx.config.feedback_folds, seed)
            keep = confident_keep(labels, cross_fitted_proba(labels, folds, fit), delta)
        else:
            reviewed = np.flatnonzero(delta).astype(np.int64)
            proba = np.zeros((labels.size, ctx.num_classes))
            others = np.flatnonzero(~delta).astype(np.int64)
            if reviewed.size and others.size:
                proba[others] = fit(reviewed, labels, others)
            else:  # nothing to learn from, or nothing to judge: keep everything
                proba[np.arange(labels.size), labels] = 1.0
            keep = agreement_keep(labels, proba, delta)
        _PRUNE_CACHE[key] = np.flatnonzero(keep)
    return data.subset(torch.as_tensor(_PRUNE_CACHE[key]))


def _corrected(ctx: FitContext, labels: np.ndarray, delta: np.ndarray, seed: int) -> np.ndarray:
    """The ACT data's labels after progressive label correction: one cross-fitted
    model per round, each on the labels the round before left (reviewed rows,
    which hold human labels, are never changed)."""
    fit = _fit_proba(ctx, seed)
    folds = fold_assignment(labels.size, ctx.config.feedback_folds, seed)
    for threshold in PLC_THRESHOLDS:
        proba = cross_fitted_proba(labels, folds, fit)
        labels = progressive_correction(labels, proba, delta, threshold)
    return labels


#: Feedback-loop reviews by (data, rounds, second critic, budget, seed): a row's grid
#: points, and rows that differ only in training, share reviews that cost fits to decide.
_FEEDBACK_CACHE: dict[tuple[str, bytes, int, str, float, int], FeedbackReviews] = {}


#: Pseudo-labelling runs by (data, kind, budget, seed), shared by a row's grid points.
_PSEUDO_CACHE: dict[tuple[str, bytes, str, float, int], PseudoLabels] = {}


def _pseudo(ctx: FitContext, method: Method, budget: float, seed: int) -> PseudoLabels:
    """The labels of a pseudo-labelling row (:func:`pseudo_labels`), computed once."""
    assert method.pseudo is not None
    key = (ctx.dataset, _fingerprint(ctx.human), method.pseudo, budget, seed)
    if key not in _PSEUDO_CACHE:
        _PSEUDO_CACHE[key] = pseudo_labels(
            ctx.human,
            budget_count(budget, len(ctx.human)),
            seed=seed,
            fit_proba=_fit_proba(ctx, seed),
            active=method.pseudo == "active",
        )
    return _PSEUDO_CACHE[key]


def _feedback(ctx: FitContext, method: Method, budget: float, seed: int) -> FeedbackReviews:
    """The reviews of a feedback-loop row (:func:`feedback_reviews`), computed once."""
    if method.rule is not Rule.THRESHOLD:
        raise ValueError(f"{method.key}: the feedback loop ranks like thresholding only")
    fingerprint = _fingerprint(ctx.annotations.eps, ctx.annotations.labels, ctx.human)
    key = (ctx.dataset, fingerprint, method.rounds, method.second_critic, budget, seed)
    if key not in _FEEDBACK_CACHE:
        _FEEDBACK_CACHE[key] = feedback_reviews(
            ctx.annotations.eps,
            ctx.annotations.labels,
            ctx.human,
            budget_count(budget, len(ctx.human)),
            rounds=method.rounds,
            folds=ctx.config.feedback_folds,
            seed=seed,
            fit_proba=_fit_proba(ctx, seed),
            second=method.second_critic,
        )
    return _FEEDBACK_CACHE[key]


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
        min_pi_reviewed=reviews.min_pi_reviewed if reviews is not None else _min_pi(data),
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
