"""A sampling decision as the sampler's outputs: a ReviewRequest or a machine FinalLabel.

Pure message building, shared by streaming and batch mode; every output
carries the full ``SamplingDecision`` (delta, pi, eps, rule, mode,
alpha/beta/tau, budget fraction, pi_min, seed, draw, window).
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from act.v1 import common_pb2, critique_pb2, review_pb2, sampling_pb2, task_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from services.core.params import RULES, SamplingParams
from services.core.sampling import Rule
from services.runtime.retry import PermanentError
from services.runtime.stage import Output

DECISIONS = Counter(
    "act_sampler_decisions_total",
    "Sampling decisions made (a re-processed record counts again).",
    ["mode", "rule", "delta"],
)


def check_rule(critique: critique_pb2.Critique, cfg: SamplingParams, task_id: str) -> None:
    if (
        critique.strategy == common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY
        and cfg.rule is not Rule.THRESHOLD
    ):
        raise PermanentError(
            "COT_PERPLEXITY eps is an order, not a probability: only the threshold rule "
            f"applies (task {task_id} uses {cfg.rule.value})"
        )


def validate(critique: critique_pb2.Critique) -> tuple[str, str, float]:
    item = critique.annotation.item
    if not item.task_id or not item.item_id:
        raise PermanentError("critique without annotation.item.task_id / item_id")
    eps = float(critique.eps)
    if not (0.0 <= eps <= 1.0):  # also NaN
        raise PermanentError(f"eps {critique.eps!r} outside [0, 1]")
    return item.task_id, item.item_id, eps


@dataclass(slots=True)
class Decided:
    """A decision and every parameter in effect, as SamplingDecision records it."""

    delta: bool
    pi: float
    eps: float
    draw: float
    rule: Rule
    mode: int
    budget_fraction: float
    pi_min: float
    seed: int
    window_id: str
    alpha: float | None = None
    beta: float | None = None
    tau: float | None = None
    #: The second critic (streaming feedback loop): its fit id and its error
    #: probability; ``eps`` is then the fused eps. Empty / None: the critic alone.
    second_fit_id: str = ""
    second_eps: float | None = None
    #: Without a second critic: the fit whose recalibration of the critic gave eps.
    calibration_fit_id: str = ""


def timestamp_now() -> Timestamp:
    ns = time.time_ns()
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


@functools.lru_cache(maxsize=64)
def decision_counter(mode: str, rule: str, delta: bool) -> Any:
    return DECISIONS.labels(mode=mode, rule=rule, delta="true" if delta else "false")


def _fill_decision(
    target: sampling_pb2.SamplingDecision,
    critique: critique_pb2.Critique,
    d: Decided,
    now: Timestamp,
) -> None:
    # Filled in place inside the output message: the critique (with annotation
    # and item) is copied once, not once into a decision and again into the output.
    target.critique.CopyFrom(critique)
    target.delta = d.delta
    target.pi = d.pi
    target.eps = d.eps
    target.rule = RULES[d.rule]
    target.mode = d.mode  # type: ignore[assignment]
    target.budget_fraction = d.budget_fraction
    target.pi_min = d.pi_min
    target.seed = d.seed
    target.draw = d.draw
    target.window_id = d.window_id
    if d.alpha is not None:
        target.alpha = d.alpha
    if d.beta is not None:
        target.beta = d.beta
    if d.tau is not None:
        target.tau = d.tau
    if d.second_fit_id:
        target.second_critic_fit_id = d.second_fit_id
    if d.second_eps is not None:
        target.second_critic_eps = d.second_eps
    if d.calibration_fit_id:
        target.calibration_fit_id = d.calibration_fit_id
    target.decided_at.CopyFrom(now)


def request_id(task_id: str, item_id: str) -> str:
    """Deterministic review request id: a replay produces the same id (idempotent queueing)."""
    digest = hashlib.blake2b(f"{task_id}\x1f{item_id}".encode(), digest_size=16).hexdigest()
    return f"rr-{digest}"


def decision_outputs(
    critique: critique_pb2.Critique,
    task: task_pb2.Task | None,
    d: Decided,
    headers: Mapping[str, str],
    now: Timestamp,
) -> list[Output]:
    """delta = 1: a ReviewRequest; delta = 0: a machine-final FinalLabel."""
    # Fields are set one by one: protobuf keyword construction is about twice
    # as slow, and this runs for every item.
    annotation = critique.annotation
    item = annotation.item
    if d.delta:
        request = review_pb2.ReviewRequest()
        request.request_id = request_id(item.task_id, item.item_id)
        # Higher eps first; an int32 keeps 6 decimals of eps.
        request.priority = min(2**31 - 1, math.floor(d.eps * 1_000_000))
        request.requested_at.CopyFrom(now)
        _fill_decision(request.decision, critique, d, now)
        if task is not None:  # label set and instructions for the gateway, no lookup there
            request.task.CopyFrom(task)
        return [Output(topic="review_requests", key=item.item_id, value=request, headers=headers)]
    label = review_pb2.FinalLabel()
    label.item_id = item.item_id
    label.task_id = item.task_id
    label.label_index = annotation.label_index
    label.source = common_pb2.LABEL_SOURCE_MACHINE
    label.machine_label = annotation.label_index
    label.delta = False
    label.pi = d.pi
    label.eps = critique.eps  # the critic's own estimate; the decision has the fused one
    label.item.CopyFrom(item)
    label.finalized_at.CopyFrom(now)
    label.label_name = annotation.label_name
    _fill_decision(label.decision, critique, d, now)
    return [Output(topic="labels", key=item.item_id, value=label, headers=headers)]
