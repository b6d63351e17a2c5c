"""The demo's calls to the running services: gateway reviewers and the trainer's fit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
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


async def create_reviewer(target: str, admin_token: str) -> str:
    """A reviewer's token from the gateway (admin call)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_pb2_grpc.ReviewServiceStub(channel)
        created = await stub.CreateReviewer(
            api_pb2.CreateReviewerRequest(name="replay-reviewer"),
            metadata=bearer_metadata(admin_token),
            timeout=10,
        )
    return str(created.token)


def replay_reviewer(
    target: str, token: str, task: task_pb2.Task, plan: Plan, accuracy: float
) -> ReplayReviewer:
    """The replay reviewer of this run (human labels from the data set)."""
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
    target: str, task: task_pb2.Task, model: str, say: Say, timeout_s: float
) -> training_pb2.FitStatus:
    """Start a fit with the ACT loss on the trainer service; report every epoch."""
    config = training_pb2.FitConfig(
        loss=training_pb2.LOSS_KIND_ACT,
        rule=task.sampling.rule,
        model=model,
        power_lambda_grid=[0.6, 0.8, 1.0],
        seed=0,
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
                task_id=task.task_id, config=config, idempotency_key=f"demo-{task.task_id}"
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
