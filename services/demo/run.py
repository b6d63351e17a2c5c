"""The steps of the main job (``python -m services.demo``).

1. **Items.** A seeded sample of a built-in data set (Fashion-MNIST or
   SpamAssassin), outside the few-shot seed the local models learn from.
2. **Model selection** (paper, section 4.3): the few-shot annotator and critic
   on a small human-labelled set give the annotator's accuracy, the critic's
   ABS, the ideal budget (the annotator's error rate) and the recommended one
   (10 points more, appendix F).
3. **Five services** as processes over the local Kafka broker and PostgreSQL:
   annotator and criticizer with the few-shot backend, sampler, review gateway
   and trainer, on topics of their own (a run prefix) so runs never mix.
4. **Stream.** The items go to ``act.items`` like ``act ingest``; the replay
   reviewer answers the review requests with the data set's human labels,
   while a progress line per few seconds shows each stage's committed counts
   (scraped from the services' ``/metrics``).
5. **Train.** A ``StartFit`` on the trainer service fits the downstream model
   with the ACT loss on the final labels, progress per epoch.
6. **Table 3** from what the trainer stored: every method, five seeds, the
   gaps and the plots (:mod:`services.experiments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import numpy as np
from act.v1 import api_pb2, api_pb2_grpc, common_pb2, task_pb2, training_pb2
from prometheus_client.parser import text_string_to_metric_families

from services.cli.datasets import get_source
from services.cli.ingest import IngestOptions, ingest_to_kafka, parse_records
from services.cli.taskio import publish_task
from services.evaluation import abs_score, accuracy
from services.evaluation.metrics import ideal_budget, recommended_budget
from services.fewshot.pair import PROVIDER, FewShotPair, pair_for_dataset
from services.fewshot.pools import LabelledPool
from services.fewshot.seed import DEFAULT_SEED, select_seed
from services.review_gateway.replay import ReplayConfig, ReplayReviewer
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.topics import default_catalog

REPO = Path(__file__).resolve().parents[2]
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DemoDataset:
    """How one built-in data set runs through the demo."""

    name: Literal["fashion", "spam"]
    source: str  # services.cli.datasets / services.fewshot.pools name
    modality: common_pb2.Modality.ValueType
    trainer_model: str
    instructions: str
    default_items: int


DATASETS: dict[str, DemoDataset] = {
    "fashion": DemoDataset(
        "fashion",
        "fashion-mnist",
        common_pb2.MODALITY_IMAGE,
        "cnn-28x28",
        "Which kind of clothing or accessory does the image show?",
        6000,
    ),
    "spam": DemoDataset(
        "spam",
        "spam-assassin",
        common_pb2.MODALITY_TEXT,
        "minilm-head",
        "Is this email unsolicited bulk mail (spam) or wanted mail (ham)?",
        3000,
    ),
}

#: Fit metrics shown per epoch (the trainer reports more, e.g. per-lambda search scores).
FIT_METRICS = ("train_loss", "val_accuracy")

#: Stages in pipeline order, as their services report themselves in /metrics.
STAGES = ("annotator", "criticizer", "sampler", "review-gateway", "trainer")


@dataclass(frozen=True)
class DemoConfig:
    """What one demo run does."""

    dataset: DemoDataset
    items: int
    out: Path
    bootstrap: str
    database_url: str
    rule: Literal["exponential", "threshold", "normalization"] = "exponential"
    selection_items: int = 500
    reviewer_accuracy: float = 1.0
    seeds: int = 5
    stall_s: float = 180.0
    fit_timeout_s: float = 600.0
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))


# ------------------------------------------------------------------ items


@dataclass(frozen=True)
class Plan:
    """Which items stream and which form the model-selection set."""

    pool: LabelledPool
    streamed: np.ndarray  # pool indices
    selection: np.ndarray  # pool indices, disjoint from streamed and the seed
    seed_size: int


def plan_items(pool: LabelledPool, n_items: int, n_selection: int, pair: FewShotPair) -> Plan:
    """A seeded sample of items outside the few-shot seed (the models' training data)."""
    seed_idx = set(int(i) for i in pair.selection.indices)
    rest = np.array([i for i in range(len(pool)) if i not in seed_idx], dtype=np.int64)
    order = rest[np.random.default_rng(0).permutation(rest.size)]
    if n_items + n_selection > order.size:
        raise ValueError(
            f"{pool.name} has {order.size} items outside the seed; asked for {n_items} to "
            f"stream and {n_selection} for model selection"
        )
    return Plan(
        pool,
        np.sort(order[:n_items]),
        order[n_items : n_items + n_selection],
        len(seed_idx),
    )


@dataclass(frozen=True)
class Selection:
    """The paper's model-selection guideline on a small human-labelled set."""

    annotator: str
    critic: str
    accuracy: float
    critic_abs: float
    ideal_budget: float
    recommended_budget: float


def select_budget(pair: FewShotPair, task: task_pb2.Task, plan: Plan) -> Selection:
    """Annotator accuracy, critic ABS, ideal and recommended budget on ``plan.selection``."""
    items = plan.pool.items(plan.selection, task.task_id)
    human = np.array([plan.pool.label_of(int(i)) for i in plan.selection], dtype=np.int64)
    machine = np.array([r.label_index for r in pair.annotator.annotate_many(task, items)])
    eps = pair.critic.eps_many(items, machine.tolist())
    ideal = ideal_budget(machine, human)
    return Selection(
        annotator=pair.annotator.name,
        critic=pair.critic.name,
        accuracy=accuracy(machine, human),
        critic_abs=abs_score(machine, human, eps),
        ideal_budget=ideal,
        recommended_budget=recommended_budget(ideal),
    )


def make_task(config: DemoConfig, pool: LabelledPool, budget: float) -> task_pb2.Task:
    """The demo task: few-shot models, streaming sampling with ``config.rule``."""
    ds = config.dataset
    ref = common_pb2.ModelRef(provider=PROVIDER, model="default", params={"dataset": ds.source})
    rules = {
        "exponential": common_pb2.SAMPLING_RULE_EXPONENTIAL,
        "threshold": common_pb2.SAMPLING_RULE_THRESHOLD,
        "normalization": common_pb2.SAMPLING_RULE_NORMALIZATION,
    }
    return task_pb2.Task(
        task_id=f"demo-{ds.name}-{config.run_id}",
        name=f"ACT demo ({pool.name})",
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(pool.label_names)],
        modality=ds.modality,
        instructions=ds.instructions,
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        critique_strategy=common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT,
        annotator_model=ref,
        critic_model=ref,  # "default" resolves to a different model for the critic
        budget=task_pb2.Budget(fraction=budget),
        sampling=task_pb2.SamplingConfig(
            rule=rules[config.rule], mode=common_pb2.SAMPLING_MODE_STREAMING, seed=0
        ),
    )


def streamed_records(config: DemoConfig, plan: Plan) -> Iterator[dict[str, Any]]:
    """The data set's records of the streamed items, in file order."""
    wanted = {plan.pool.ids[int(i)] for i in plan.streamed}
    for record in get_source(config.dataset.source).iter_records():
        if record["id"] in wanted:
            yield record


# --------------------------------------------------------------- services


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """One service process of the demo."""

    name: str
    module: str
    env: dict[str, str]
    metrics_port: int
    grpc_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the process, output to its log file."""
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), str(REPO / "protos"), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the demo only
            )

    def metrics(self) -> dict[str, float]:
        """Its Prometheus samples summed by name (empty when it does not answer)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                text = reply.read().decode()
        except OSError:
            return {}
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    def check_alive(self) -> None:
        """Raise with the log's path when the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"the {self.name} service exited with code {self.proc.returncode}; "
                f"see {self.log_path}"
            )

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (drain and commit), then SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def make_services(
    config: DemoConfig, run_dir: Path, prefix: str, admin_token: str
) -> list[Service]:
    """The five services' processes, configured for this run (not started)."""
    common = {
        "ACT_KAFKA_BOOTSTRAP_SERVERS": config.bootstrap,
        "ACT_KAFKA_TOPIC_PREFIX": prefix,
        "OMP_NUM_THREADS": "1",  # five processes share the cores
    }
    ds = config.dataset.source
    specs: list[tuple[str, str, str, dict[str, str]]] = [
        (
            "annotator",
            "services.annotator",
            "ACT_ANNOTATOR_",
            {"BACKEND": "local-fewshot", "FEWSHOT_DATASET": ds},
        ),
        (
            "criticizer",
            "services.criticizer",
            "ACT_CRITICIZER_",
            {"BACKEND": "local-fewshot", "FEWSHOT_DATASET": ds},
        ),
        ("sampler", "services.sampler", "ACT_SAMPLER_", {}),
        (
            "review-gateway",
            "services.review_gateway",
            "ACT_GATEWAY_",
            {
                "DATABASE_URL": config.database_url,
                "DATABASE_SCHEMA": prefix.rstrip(".").replace("-", "_"),
                "ADMIN_TOKEN": admin_token,
                "DATA_DIR": str(run_dir / "gateway"),
            },
        ),
        (
            "trainer",
            "services.trainer",
            "ACT_TRAINER_",
            {
                "STORE_PATH": str(run_dir / "trainer" / "store.sqlite"),
                "CHECKPOINT_DIR": str(run_dir / "trainer" / "checkpoints"),
                "DEVICE": "cpu",
                "TORCH_THREADS": "2",
            },
        ),
    ]
    services = []
    for name, module, env_prefix, extra in specs:
        metrics_port, grpc_port = free_port(), free_port()
        env = dict(common)
        env.update({env_prefix + k: v for k, v in extra.items()})
        env.update(
            {
                f"{env_prefix}METRICS_PORT": str(metrics_port),
                f"{env_prefix}GRPC_PORT": str(grpc_port),
                f"{env_prefix}ENVIRONMENT": "dev",
                f"{env_prefix}LOG_LEVEL": "INFO",
            }
        )
        services.append(
            Service(name, module, env, metrics_port, grpc_port, run_dir / "logs" / f"{name}.log")
        )
    return services


async def wait_ready(services: list[Service], timeout_s: float = 180.0) -> None:
    """Until every service answers on /metrics (raise if one exits or times out)."""
    deadline = time.monotonic() + timeout_s
    pending = list(services)
    while pending:
        for service in list(pending):
            service.check_alive()
            if await asyncio.to_thread(service.metrics):
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise TimeoutError(f"not ready after {timeout_s:.0f} s: {names}")
        await asyncio.sleep(0.5)


# --------------------------------------------------------------- progress


@dataclass
class Progress:
    """Committed inputs per stage and dead letters, from the services' /metrics."""

    committed: dict[str, int]
    dead_letters: int
    reviews: int

    def line(self, total: int, elapsed_s: float) -> str:
        """One progress line."""
        parts = " | ".join(f"{s} {self.committed.get(s, 0):>5}" for s in STAGES)
        return f"[{elapsed_s:6.1f} s] items {total} | {parts} | reviews {self.reviews}" + (
            f" | dead letters {self.dead_letters}" if self.dead_letters else ""
        )


def read_progress(services: list[Service], reviews: int) -> Progress:
    """Scrape every service's committed count and dead letters."""
    committed: dict[str, int] = {}
    dead = 0
    for service in services:
        samples = service.metrics()
        committed[service.name] = int(samples.get("act_messages_committed_total", 0))
        dead += int(samples.get("act_dead_letters_total", 0))
    return Progress(committed, dead, reviews)


async def stream_until_trained_on(
    services: list[Service],
    reviewer: ReplayReviewer,
    total: int,
    say: Say,
    *,
    stall_s: float,
    every_s: float = 3.0,
) -> Progress:
    """Print progress until the trainer holds every item's final label (or a dead letter)."""
    started = time.monotonic()
    last_change = started
    last: tuple[int, ...] = ()
    while True:
        for service in services:
            service.check_alive()
        progress = await asyncio.to_thread(read_progress, services, reviewer.summary.submitted)
        state = (*progress.committed.values(), progress.reviews, progress.dead_letters)
        now = time.monotonic()
        if state != last:
            say(progress.line(total, now - started))
            last, last_change = state, now
        if progress.committed.get("trainer", 0) + progress.dead_letters >= total:
            return progress
        if now - last_change > stall_s:
            raise TimeoutError(
                f"no progress for {stall_s:.0f} s; the service logs are in "
                f"{services[0].log_path.parent}"
            )
        await asyncio.sleep(every_s)


# ------------------------------------------------------------------ gRPC


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a bearer token."""
    return (("authorization", f"Bearer {token}"),)


async def create_reviewer(target: str, admin_token: str) -> str:
    """A reviewer's token from the gateway (admin call)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_pb2_grpc.ReviewServiceStub(channel)
        created = await stub.CreateReviewer(
            api_pb2.CreateReviewerRequest(name="replay-reviewer"),
            metadata=bearer(admin_token),
            timeout=10,
        )
    return str(created.token)


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


def reviewer_labels(plan: Plan) -> Mapping[str, int]:
    """The data set's human labels of the streamed items (what the replay reviewer answers)."""
    return {plan.pool.ids[int(i)]: plan.pool.label_of(int(i)) for i in plan.streamed}


async def ensure_run_topics(kafka: KafkaSettings) -> None:
    """Every topic of the specification under this run's prefix."""
    await ensure_topics(kafka, replication=1)


def items_topic(kafka: KafkaSettings) -> str:
    """The items topic's name under the run prefix."""
    return default_catalog().name("items", kafka.topic_prefix)


async def publish(config: DemoConfig, kafka: KafkaSettings, task: task_pb2.Task, plan: Plan) -> int:
    """Publish the task and stream the planned items; returns items sent."""
    await publish_task(kafka, task)
    options = IngestOptions(
        task_id=task.task_id,
        source=config.dataset.source,
        labels=[label.name for label in task.labels],
        modality=task.modality,
    )
    summary = await ingest_to_kafka(
        kafka,
        parse_records(streamed_records(config, plan), options),
        topic=items_topic(kafka),
        task_id=task.task_id,
        total=len(plan.streamed),
        progress=False,
    )
    if summary.bad or summary.failed:
        raise RuntimeError(f"ingest: {len(summary.bad)} bad, {len(summary.failed)} failed")
    return int(summary.sent)


async def stop_reviewer(reviewer: ReplayReviewer, task: asyncio.Task[Any]) -> None:
    """Stop the replay reviewer and wait for it."""
    reviewer.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, timeout=30)


def seed_pair(dataset: DemoDataset) -> FewShotPair:
    """The few-shot pair the services will fit (same data set, seed size and seed)."""
    return pair_for_dataset(dataset.source)


def check_seed_is_default(pair: FewShotPair, pool: LabelledPool) -> None:
    """The demo's seed is the services' seed (both use the defaults)."""
    expected = select_seed(
        pool.ids,
        pool.label_of,
        n_classes=pool.n_classes,
        per_class=len(pair.selection.indices) // pool.n_classes,
        seed=DEFAULT_SEED,
    )
    if not np.array_equal(expected.indices, pair.selection.indices):
        raise RuntimeError("the few-shot seed differs from the services' default seed")


def new_admin_token() -> str:
    """A random admin token for this run's gateway."""
    return secrets.token_urlsafe(24)


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


def service_model_accuracy(checkpoint_uri: str, raw: Any, labels: np.ndarray) -> float:
    """Test accuracy of the model the trainer service wrote (its final ``model.pt``)."""
    import torch

    from services.trainer.features import prepare_inputs
    from services.trainer.fit import predict
    from services.trainer.models import build_model, model_spec

    path = Path(checkpoint_uri.removeprefix("file://"))
    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = training_pb2.FitConfig.FromString(payload["config"])
    params = {k: v for k, v in config.params.items() if k != "num_classes"}
    spec = model_spec(str(payload["model_name"]))
    num_classes = int(config.params.get("num_classes", "0")) or int(labels.max()) + 1
    model = build_model(spec.name, num_classes, params)
    model.load_state_dict(payload["model"])
    predicted = predict(model, prepare_inputs(spec.input_kind, raw)).numpy()
    return float((predicted == labels).mean())
