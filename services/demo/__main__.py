"""``python -m services.demo``: the main job (``make demo`` starts the local stack first).

Streams a real data set through the annotator, criticizer, sampler, review
gateway (with the replay reviewer at the recommended budget) and trainer
over Kafka with local models, fits with the ACT loss, then prints the
paper's Table 3 for the streamed data and writes it with two plots under
``--out``. Steps and their reasons: :mod:`services.demo.run`.

Options: ``--dataset fashion|spam`` (default fashion, a data set of the
paper), ``--items N``, ``--rule exponential|threshold|normalization``,
``--seeds``, ``--out``. The broker and the database come from
``ACT_KAFKA_BOOTSTRAP_SERVERS`` and ``ACT_DEMO_DATABASE_URL`` (the local
stack's defaults otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.demo import run as steps
from services.experiments.pipeline import experiment_from_store
from services.experiments.presets import preset
from services.experiments.report import markdown_table, write_report
from services.experiments.table import compute_table
from services.runtime.config import KafkaSettings
from services.runtime.logging import configure_logging


def say(message: str) -> None:
    """Progress on stdout, flushed (the demo is watched live)."""
    print(message, flush=True)


def parse_args(argv: list[str] | None = None) -> steps.DemoConfig:
    """The run's configuration from the command line and environment."""
    p = argparse.ArgumentParser(prog="python -m services.demo", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(steps.DATASETS), default="fashion")
    p.add_argument("--items", type=int, default=0, help="items to stream (default: per data set)")
    p.add_argument("--rule", choices=["exponential", "threshold", "normalization"],
                   default="exponential", help="sampling rule of the stream")  # fmt: skip
    p.add_argument("--seeds", type=int, default=5, help="runs per method in Table 3")
    p.add_argument("--out", type=Path, default=Path("reports/demo"))
    args = p.parse_args(argv)
    dataset = steps.DATASETS[args.dataset]
    if args.items < 0 or args.seeds < 1:
        p.error("--items must be >= 0 and --seeds >= 1")
    return steps.DemoConfig(
        dataset=dataset,
        items=args.items or dataset.default_items,
        out=args.out,
        bootstrap=os.environ.get("ACT_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        database_url=os.environ.get(
            "ACT_DEMO_DATABASE_URL", "postgresql://act:act@127.0.0.1:55432/act"
        ),
        rule=args.rule,
        seeds=args.seeds,
    )


@dataclass(frozen=True)
class Streamed:
    """What steps 1-5 leave for the table."""

    task_id: str
    store: Path
    selection: steps.Selection
    seed_size: int
    checkpoint_uri: str
    budget: float


async def stream_and_train(config: steps.DemoConfig, run_dir: Path) -> Streamed:
    """Steps 1-5."""
    ds = config.dataset
    say(f"\n== 1. items: {config.items} from {ds.source}, outside the few-shot seed")
    pair = await asyncio.to_thread(steps.seed_pair, ds)
    from services.fewshot.pools import builtin_pool

    pool = builtin_pool(ds.source)
    steps.check_seed_is_default(pair, pool)
    plan = steps.plan_items(pool, config.items, config.selection_items, pair)
    per_class = plan.seed_size // pool.n_classes
    say(f"   few-shot seed: {plan.seed_size} human-labelled examples ({per_class} per class); "
        "the models see no other label")  # fmt: skip

    say(f"\n== 2. model selection on {config.selection_items} human-labelled items "
        "(paper, section 4.3)")  # fmt: skip
    draft = steps.make_task(config, pool, budget=0.5)
    sel = await asyncio.to_thread(steps.select_budget, pair, draft, plan)
    say(f"   annotator {sel.annotator}: accuracy {sel.accuracy:.1%}; "
        f"critic {sel.critic}: ABS {sel.critic_abs:.3f}")  # fmt: skip
    say(f"   ideal budget {sel.ideal_budget:.1%} (the annotator's error rate); recommended "
        f"{sel.recommended_budget:.1%} (+10 points, appendix F)")  # fmt: skip
    task = steps.make_task(config, pool, budget=sel.recommended_budget)

    prefix = f"demo{config.run_id.replace('-', '')}."
    kafka = KafkaSettings(bootstrap_servers=config.bootstrap, topic_prefix=prefix)
    say(f"\n== 3. five services on Kafka {config.bootstrap} (topics {prefix}act.*), "
        "PostgreSQL for the review gateway")  # fmt: skip
    await steps.ensure_run_topics(kafka)
    admin = steps.new_admin_token()
    services = steps.make_services(config, run_dir, prefix, admin)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    reviewer_task: asyncio.Task[object] | None = None
    reviewer = None
    try:
        for service in services:
            service.start()
        await steps.wait_ready(services)
        for service in services:
            say(f"   {service.name:<15} pid {service.proc.pid if service.proc else '?':<7} "
                f"metrics :{service.metrics_port}  gRPC :{service.grpc_port}  "
                f"log {service.log_path}")  # fmt: skip
        gateway = next(s for s in services if s.name == "review-gateway")
        trainer = next(s for s in services if s.name == "trainer")
        token = await steps.create_reviewer(f"127.0.0.1:{gateway.grpc_port}", admin)
        reviewer = steps.replay_reviewer(
            f"127.0.0.1:{gateway.grpc_port}", token, task, plan, config.reviewer_accuracy
        )
        reviewer_task = asyncio.create_task(reviewer.run())

        say(f"\n== 4. stream: task {task.task_id}, {config.rule} rule, budget "
            f"{task.budget.fraction:.1%}; the replay reviewer answers with the data set's "
            "human labels")  # fmt: skip
        started = time.monotonic()
        sent = await steps.publish(config, kafka, task, plan)
        say(f"   {sent} items published to {steps.items_topic(kafka)} "
            f"in {time.monotonic() - started:.1f} s")  # fmt: skip
        progress = await steps.stream_until_trained_on(
            services, reviewer, sent, say, stall_s=config.stall_s
        )
        reviewed = reviewer.summary.submitted
        say(f"   done in {time.monotonic() - started:.0f} s: {reviewed} human reviews "
            f"({reviewed / sent:.1%} of items, budget {task.budget.fraction:.1%}), "
            f"{progress.dead_letters} dead letters")  # fmt: skip
        await steps.stop_reviewer(reviewer, reviewer_task)
        reviewer_task = None

        say(f"\n== 5. trainer: {ds.trainer_model} with the ACT loss on the final labels")
        status = await steps.fit_with_act_loss(
            f"127.0.0.1:{trainer.grpc_port}", task, ds.trainer_model, say, config.fit_timeout_s
        )
        if status.error:
            raise RuntimeError(f"the fit failed: {status.error}")
        say(f"   fit {status.fit_id}: {status.labels_used} labels "
            f"({status.human_labels_used} human), lambda "
            f"{status.power_lambda_used:.2f}, checkpoint {status.checkpoint_uri}")  # fmt: skip
    finally:
        if reviewer is not None and reviewer_task is not None:
            await steps.stop_reviewer(reviewer, reviewer_task)
        for service in reversed(services):
            service.stop()
    return Streamed(
        task.task_id,
        run_dir / "trainer" / "store.sqlite",
        sel,
        plan.seed_size,
        status.checkpoint_uri,
        task.budget.fraction,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 on success."""
    config = parse_args(argv)
    configure_logging("demo", "WARNING")
    run_dir = (config.out / config.run_id).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"ACT stream demo: {config.dataset.name}, run {config.run_id}, output {run_dir}")
    streamed = asyncio.run(stream_and_train(config, run_dir))

    say(f"\n== 6. Table 3 on the streamed items ({config.seeds} seeds per method)")
    say("   every method trains on the streamed items with the pipeline's machine labels and "
        "eps; as in the paper, delta is re-drawn for each rule at the ideal budget of these "
        "items, with their human labels from the data set")  # fmt: skip
    data, annotations = experiment_from_store(
        config.dataset.name,
        streamed.store,
        streamed.task_id,
        annotator=streamed.selection.annotator,
        critic=streamed.selection.critic,
        seed_size=streamed.seed_size,
    )
    service_acc = steps.service_model_accuracy(
        streamed.checkpoint_uri, data.test.raw, data.test.labels
    )
    say(f"   the trainer service's model (ACT {config.rule} loss on the streamed labels, "
        f"{streamed.budget:.1%} budget): test accuracy {service_acc:.2%} "
        f"on {len(data.test)} held-out items")  # fmt: skip
    settings = preset("bench", config.dataset.name)
    result = compute_table(
        data, annotations, seeds=config.seeds, config=settings.config, progress=say
    )
    paths = write_report(result, run_dir / "table")
    say("\n" + markdown_table(result))
    say(f"\nwritten: {', '.join(str(p) for p in paths.values())}")
    say(f"service logs: {run_dir / 'logs'}; total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
