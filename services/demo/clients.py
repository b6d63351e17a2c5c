"""The demo's calls to the running services: gateway reviewers and the trainer's fit."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from act.v1 import api_pb2, api_pb2_grpc, task_pb2, training_pb2

from services.demo.plan import Plan, reviewer_labels
from services.review_gateway.auth import bearer_metadata
from services.review_gateway.replay import ReplayConfig, ReplayReviewer

Say = Callable[[str], None]

#: Fit metrics shown per epoch (the trainer reports more, e.g. per-lambda search scores).
FIT_METRICS = ("train_loss", "val_accuracy")


# ---------------------------------------------------------- review gateway


async def create_reviewer(
    target: str,
    admin_token: str,
    name: str = "replay-reviewer",
    role: api_pb2.ReviewerRole.ValueType = api_pb2.REVIEWER_ROLE_REVIEWER,
) -> str:
    """A reviewer's token from the gateway (admin call)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_pb2_grpc.ReviewServiceStub(channel)
        created = await stub.CreateReviewer(
            api_pb2.CreateReviewerRequest(name=name, role=role),
            metadata=bearer_metadata(admin_token),
            timeout=10,
        )
    return str(created.token)


@dataclass(frozen=True)
class WebLogins:
    """The web workspace of this run's gateway and the two people's demo tokens."""

    base_url: str
    # Shown once on the operator's terminal; never in a repr, so never in a log line.
    admin_token: str = field(repr=False)  # reviewer "demo-admin" (role admin)
    reviewer_token: str = field(repr=False)  # reviewer "demo-reviewer"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/admin"

    @property
    def review_url(self) -> str:
        return f"{self.base_url}/review"

    @property
    def login_url(self) -> str:
        return f"{self.base_url}/login"


async def create_web_logins(target: str, admin_token: str, base_url: str) -> WebLogins:
    """An admin reviewer and a reviewer for the web workspace.

    The bootstrap admin token is for gRPC only (the web login refuses it), so
    the admin page needs an admin *reviewer*.
    """
    admin = await create_reviewer(target, admin_token, "demo-admin", api_pb2.REVIEWER_ROLE_ADMIN)
    reviewer = await create_reviewer(target, admin_token, "demo-reviewer")
    return WebLogins(base_url, admin, reviewer)


async def task_completed(target: str, admin_token: str, task_id: str) -> int:
    """Review requests of the task with a human label on the gateway (admin call)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_pb2_grpc.ReviewServiceStub(channel)
        stats = await stub.GetTaskStats(
            api_pb2.GetTaskStatsRequest(task_id=task_id),
            metadata=bearer_metadata(admin_token),
            timeout=10,
        )
    return int(stats.completed)


def replay_reviewer(
    target: str,
    token: str,
    task: task_pb2.Task,
    plan: Plan,
    accuracy: float,
    leave_for_people: int = 0,
) -> ReplayReviewer:
    """The replay reviewer of this run (human labels from the data set).

    It skips the first ``leave_for_people`` items it leases, which stay
    pending for a person in the web workspace (``--review-in-browser``).
    """
    return ReplayReviewer(
        ReplayConfig(
            target=target,
            token=token,
            task_id=task.task_id,
            held_labels=dict(reviewer_labels(plan)),
            accuracy=accuracy,
            concurrency=8,
            idle_seconds=1e9,  # stopped by the demo once the trainer has every label
            seed=0,
            leave_for_people=leave_for_people,
        )
    )


async def stop_reviewer(reviewer: ReplayReviewer, task: asyncio.Task[Any]) -> None:
    """Stop the replay reviewer and wait for it."""
    reviewer.stop()
    # Its outcome no longer matters: the trainer already holds every label.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, timeout=30)


# ----------------------------------------------------------------- trainer


async def fit_with_act_loss(
    target: str, task: task_pb2.Task, model: str, say: Say, timeout_s: float, *, key: str
) -> training_pb2.FitStatus:
    """Start a fit with the ACT loss on the trainer service; report every epoch.

    ``key`` names the fit within the run (its idempotency key): asking again
    with the same key follows the same fit.
    """
    config = training_pb2.FitConfig(
        loss=training_pb2.LOSS_KIND_ACT,
        rule=task.sampling.rule,
        model=model,
        power_lambda_grid=[0.6, 0.8, 1.0],
        seed=0,
        # The agreement filter only where it beats the plain ACT data on validation.
        cleaning=training_pb2.LABEL_CLEANING_AUTO,
    )
    done = (
        training_pb2.FIT_STATE_SUCCEEDED,
        training_pb2.FIT_STATE_FAILED,
        training_pb2.FIT_STATE_CANCELLED,
    )
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_pb2_grpc.TrainingServiceStub(channel)
        status = await stub.StartFit(
            api_pb2.StartFitRequest(
                task_id=task.task_id, config=config, idempotency_key=f"demo-{task.task_id}-{key}"
            ),
            timeout=30,
        )
        deadline = time.monotonic() + timeout_s
        seen = -1
        while status.state not in done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fit {status.fit_id} not finished after {timeout_s:.0f} s")
            await asyncio.sleep(2)
            status = await stub.GetFit(api_pb2.GetFitRequest(fit_id=status.fit_id), timeout=10)
            if status.epoch != seen:
                seen = status.epoch
                shown = ", ".join(
                    f"{k} {status.metrics[k]:.4f}" for k in FIT_METRICS if k in status.metrics
                )
                say(
                    f"  fit {status.fit_id[:8]}: {training_pb2.FitState.Name(status.state)}, "
                    f"epoch {status.epoch}/{status.config.epochs or '?'}"
                    + (f", {shown}" if shown else "")
                )
    return status


def describe_cleaning(metrics: Mapping[str, float]) -> str:
    """One line on what a LABEL_CLEANING_AUTO fit chose, from its metrics ("" if nothing)."""
    if "cleaning_applied" not in metrics:
        return ""
    if metrics.get("cleaning_skipped"):
        return "label cleaning: not applied (nothing to judge it on)"

    def best(variant: str) -> float:
        prefix = f"search/cleaning={variant}/"
        return max((v for k, v in metrics.items() if k.startswith(prefix)), default=math.nan)

    scores = (
        f"validation accuracy {best('agreement'):.3f} with the filter, {best('none'):.3f} without"
    )
    dropped = int(metrics.get("cleaning_dropped", 0))
    if metrics["cleaning_applied"]:
        return (
            f"label cleaning: the agreement filter dropped {dropped} unreviewed machine labels "
            f"({scores})"
        )
    return f"label cleaning: kept every label, the agreement filter did not beat that ({scores})"


def describe_second_critic(metrics: Mapping[str, float]) -> str:
    """One line on whether the sampler uses a fit's published model, from its metrics."""
    if "second_critic_used" not in metrics:
        return "feedback loop: the model was not published"
    reviews = int(metrics.get("second_critic_fusion_reviews", 0))
    fused = metrics.get("second_critic_fusion_cv_log_loss")
    critic = metrics.get("second_critic_critic_cv_log_loss")
    losses = (
        f"out-of-fold log loss {fused:.3f} fused, {critic:.3f} for the critic alone, "
        if fused is not None and critic is not None
        else ""
    )
    if metrics["second_critic_used"]:
        return (
            f"feedback loop: on (the sampler fuses the model with the critic for new items; "
            f"{losses}{reviews} validation reviews)"
        )
    why = "no gain" if losses else "too few validation reviews of either outcome"
    calibrated = (
        "; the sampler uses the critic's eps recalibrated on them"
        if metrics.get("second_critic_calibrates_critic")
        else ""
    )
    return f"feedback loop: off for now, {why} ({losses}{reviews} validation reviews){calibrated}"
