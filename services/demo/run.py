"""The steps of the main job (``python -m services.demo``), run in order.

1. **Items.** A seeded sample of a built-in data set (Fashion-MNIST or
   SpamAssassin), outside the few-shot seed the local models learn from.
2. **Model selection** (paper, section 4.3): the few-shot annotator and critic
   on a small human-labelled set give the annotator's accuracy, the critic's
   ABS, the ideal budget (the annotator's error rate) and the recommended one
   (10 points more, appendix F).
3. **Five services** as processes over the local Kafka broker and PostgreSQL:
   annotator and criticizer with the few-shot backend, sampler, review gateway
   and trainer, on topics of their own (a run prefix) so runs never mix. The
   gateway also serves its reviewer web workspace on a free local port; the
   demo creates an admin reviewer and a reviewer for it and prints the pages'
   URLs with their (demo-only) tokens on the terminal, never in a log.
4. **Stream.** The items go to ``act.items`` like ``act ingest``; the replay
   reviewer answers the review requests with the data set's human labels,
   while a progress line per few seconds shows each stage's committed counts
   (scraped from the services' ``/metrics``). With ``--review-in-browser N``
   it skips the first N review requests it leases, which stay pending for a
   person in the web workspace; the demo reminds them every 30 s and waits
   (no stall timeout while only their items are outstanding). The items go
   in **two waves** with a fit in between: the trainer publishes that fit's
   model on ``act.models`` and the sampler fuses it with the critic for the
   second wave's items when the fusion beat the critic on the fit's
   validation reviews (the feedback loop); the demo says which it was and how
   many items the model scored.
5. **Train.** A ``StartFit`` on the trainer service fits the downstream model
   with the ACT loss on the final labels, progress per epoch.
6. **Table 3** from what the trainer stored: every method, five seeds, the
   gaps and the plots (:mod:`services.experiments`).

Where the parts live: :mod:`services.demo.plan` (items, budget, task),
:mod:`services.demo.progress` (watching the stream),
:mod:`services.demo.clients` (gRPC calls), :mod:`services.demo.checkpoint`
(the trainer's model) and :mod:`services.devkit.processes` (the processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from act.v1 import task_pb2

from services.cli.ingest import IngestOptions, ingest_to_kafka, parse_records
from services.cli.taskio import publish_task
from services.demo import clients, llm
from services.demo.checkpoint import service_model_accuracy
from services.demo.plan import (
    DemoConfig,
    Plan,
    Selection,
    check_seed_is_default,
    make_task,
    plan_items,
    seed_pair,
    select_budget,
    streamed_records,
)
from services.demo.progress import PeopleReviews, stream_until_trained_on
from services.devkit.processes import Supervisor, free_port
from services.devkit.scrape import fetch, parse_samples, scrape
from services.experiments.pipeline import experiment_from_store
from services.experiments.presets import preset
from services.experiments.report import markdown_table, write_report
from services.experiments.table import compute_table
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.topics import default_catalog

Say = Callable[[str], None]

#: The sampler's count of decisions by what its second critic did.
SECOND_CRITIC = "act_sampler_second_critic_total"


# --------------------------------------------------------------- services


def make_services(
    config: DemoConfig, run_dir: Path, prefix: str, admin_token: str, llm_base_url: str = ""
) -> Supervisor:
    """The five services' processes, configured for this run (not started); with
    ``llm_base_url`` the annotator and the criticizer use that local LLM server."""
    ds = config.dataset.source
    model_env = {"BACKEND": "local-fewshot", "FEWSHOT_DATASET": ds}
    if llm_base_url:
        model_env = llm.stage_env(config, llm_base_url)
    specs: list[tuple[str, str, str, dict[str, str]]] = [
        ("annotator", "services.annotator", "ACT_ANNOTATOR_", model_env),
        ("criticizer", "services.criticizer", "ACT_CRITICIZER_", model_env),
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
                # The web workspace: this machine only, plain HTTP, so cookies
                # without the Secure flag (some browsers drop those on http://).
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(free_port()),
                "WEB_COOKIE_SECURE": "false",
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
    return Supervisor.of(
        specs, bootstrap=config.bootstrap, topic_prefix=prefix, log_dir=run_dir / "logs"
    )


def web_url(services: Supervisor) -> str:
    """The base URL of the review gateway's web workspace."""
    return f"http://127.0.0.1:{services['review-gateway'].env['ACT_GATEWAY_HTTP_PORT']}"


def say_web_logins(logins: clients.WebLogins, say: Say) -> None:
    """The web workspace's pages and tokens, on the terminal only (never a log file)."""
    say(f"\n   reviewer web workspace {logins.base_url} (log in at {logins.login_url} "
        "with a token below)")  # fmt: skip
    say("   demo-only credentials of this run, printed on this terminal only:")
    say(f"     admin page    {logins.admin_url:<40} token of demo-admin:    "
        f"{logins.admin_token}")  # fmt: skip
    say(f"     reviewer page {logins.review_url:<40} token of demo-reviewer: "
        f"{logins.reviewer_token}")  # fmt: skip


async def wait_ready(services: Supervisor, timeout_s: float = 180.0) -> None:
    """Until every service answers on /metrics (raise if one exits or times out)."""
    await services.wait_ready(lambda s: bool(scrape(s.metrics_port)), timeout_s=timeout_s)


# ---------------------------------------------------------------- stream


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


def new_admin_token() -> str:
    """A random admin token for this run's gateway."""
    return secrets.token_urlsafe(24)


# ----------------------------------------------------------------- steps


@dataclass(frozen=True)
class Streamed:
    """What steps 1-5 leave for the table."""

    task_id: str
    store: Path
    selection: Selection
    seed_size: int
    checkpoint_uri: str
    budget: float


async def stream_and_train(config: DemoConfig, run_dir: Path, say: Say) -> Streamed:
    """Steps 1-5 (with ``--backend llm``, around a local model server)."""
    if config.backend != "llm":
        return await _stream_and_train(config, run_dir, say, "")
    with llm.llm_server(config, run_dir, say) as base_url:
        return await _stream_and_train(config, run_dir, say, base_url)


async def _stream_and_train(config: DemoConfig, run_dir: Path, say: Say, llm_url: str) -> Streamed:
    ds = config.dataset
    say(f"\n== 1. items: {config.items} from {ds.source}, outside the few-shot seed")
    pair = await asyncio.to_thread(seed_pair, ds)
    from services.fewshot.pools import builtin_pool

    pool = builtin_pool(ds.source)
    check_seed_is_default(pair, pool)
    plan = plan_items(pool, config.items, config.selection_items, pair)
    per_class = plan.seed_size // pool.n_classes
    if llm_url:
        say(f"   the LLM sees no labels (zero-shot); the {plan.seed_size} few-shot seed items "
            "are left out of the stream as in the few-shot run")  # fmt: skip
    else:
        say(f"   few-shot seed: {plan.seed_size} human-labelled examples ({per_class} per "
            "class); the models see no other label")  # fmt: skip

    say(f"\n== 2. model selection on {config.selection_items} human-labelled items "
        "(paper, section 4.3)")  # fmt: skip
    draft = make_task(config, pool, budget=0.5, llm_base_url=llm_url)
    critique = draft.critique_strategy
    if llm_url:
        sel, critique = await llm.select_llm(config, draft, plan, llm_url, say)
    else:
        sel = await asyncio.to_thread(select_budget, pair, draft, plan)
    say(f"   annotator {sel.annotator}: accuracy {sel.accuracy:.1%}; "
        f"critic {sel.critic}: ABS {sel.critic_abs:.3f}")  # fmt: skip
    say(f"   ideal budget {sel.ideal_budget:.1%} (the annotator's error rate); recommended "
        f"{sel.recommended_budget:.1%} (+10 points, appendix F)")  # fmt: skip
    task = make_task(
        config, pool, budget=sel.recommended_budget, llm_base_url=llm_url, critique=critique
    )

    prefix = f"demo{config.run_id.replace('-', '')}."
    kafka = KafkaSettings(bootstrap_servers=config.bootstrap, topic_prefix=prefix)
    say(f"\n== 3. five services on Kafka {config.bootstrap} (topics {prefix}act.*), "
        "PostgreSQL for the review gateway")  # fmt: skip
    await ensure_run_topics(kafka)
    admin = new_admin_token()
    services = make_services(config, run_dir, prefix, admin, llm_url)
    reviewer_task: asyncio.Task[object] | None = None
    reviewer = None
    with services:  # stops every service, last started first, however the steps end
        try:
            services.start()
            await wait_ready(services)
            for service in services:
                web = service.env.get("ACT_GATEWAY_HTTP_PORT")
                say(f"   {service.name:<15} pid {service.pid or '?':<7} "
                    f"metrics :{service.metrics_port}  gRPC :{service.grpc_port}  "
                    + (f"web :{web}  " if web else "")
                    + f"log {service.log}")  # fmt: skip
            gateway = f"127.0.0.1:{services['review-gateway'].grpc_port}"
            trainer = f"127.0.0.1:{services['trainer'].grpc_port}"
            logins = await clients.create_web_logins(gateway, admin, web_url(services))
            say_web_logins(logins, say)
            token = await clients.create_reviewer(gateway, admin)
            reviewer = clients.replay_reviewer(
                gateway, token, task, plan, config.reviewer_accuracy, config.review_in_browser
            )
            reviewer_task = asyncio.create_task(reviewer.run())
            people = None
            if config.review_in_browser:
                people = PeopleReviews(
                    logins.review_url,
                    lambda: clients.task_completed(gateway, admin, task.task_id),
                    config.remind_every_s,
                )

            say(f"\n== 4. stream: task {task.task_id}, {config.rule} rule, budget "
                f"{task.budget.fraction:.1%}; the replay reviewer answers with the data set's "
                "human labels")  # fmt: skip
            if people is not None:
                say(f"   it leaves the first {config.review_in_browser} review requests for "
                    f"you: review them at {people.url} (token of demo-reviewer or demo-admin); "
                    "the demo waits for them before training")  # fmt: skip
            started = time.monotonic()
            sent = 0
            half = len(plan.streamed) // 2
            for wave, part in enumerate((plan.streamed[:half], plan.streamed[half:]), start=1):
                count = await publish(config, kafka, task, replace(plan, streamed=part))
                sent += count
                say(f"   wave {wave}: {count} items published to {items_topic(kafka)} "
                    f"({time.monotonic() - started:.1f} s)")  # fmt: skip
                progress = await stream_until_trained_on(
                    services, reviewer, sent, say, stall_s=config.stall_s, people=people
                )
                if wave == 1 and half < len(plan.streamed):
                    await feedback_fit(config, task, trainer, say)
            used = second_critic_used(services)
            say(f"   the second critic scored {used} of the {sent - half} second-wave items")
            reviewed = reviewer.summary.submitted
            by_people = ""
            if people is not None:
                in_browser = 0
                with contextlib.suppress(grpc.aio.AioRpcError):  # a count in a message only
                    in_browser = max(0, await people.completed() - reviewed)
                reviewed += in_browser
                by_people = f", {in_browser} of them in the browser"
            say(f"   done in {time.monotonic() - started:.0f} s: {reviewed} human reviews "
                f"({reviewed / sent:.1%} of items, budget {task.budget.fraction:.1%}"
                f"{by_people}), {progress.dead_letters} dead letters")  # fmt: skip
            await clients.stop_reviewer(reviewer, reviewer_task)
            reviewer_task = None

            say(f"\n== 5. trainer: {ds.trainer_model} with the ACT loss on the final labels")
            status = await clients.fit_with_act_loss(
                trainer, task, ds.trainer_model, say, config.fit_timeout_s, key="final"
            )
            if status.error:
                raise RuntimeError(f"the fit failed: {status.error}")
            say(f"   fit {status.fit_id}: {status.labels_used} labels "
                f"({status.human_labels_used} human), lambda "
                f"{status.power_lambda_used:.2f}, checkpoint {status.checkpoint_uri}")  # fmt: skip
            if cleaning := clients.describe_cleaning(status.metrics):
                say(f"   {cleaning}")
        finally:
            if reviewer is not None and reviewer_task is not None:
                await clients.stop_reviewer(reviewer, reviewer_task)
    return Streamed(
        task.task_id,
        run_dir / "trainer" / "store.sqlite",
        sel,
        plan.seed_size,
        status.checkpoint_uri,
        task.budget.fraction,
    )


async def feedback_fit(config: DemoConfig, task: task_pb2.Task, trainer: str, say: Say) -> None:
    """The fit between the waves: its model is the sampler's second critic if it helps."""
    say("   a fit on the first wave's labels; the trainer publishes its model for the sampler")
    status = await clients.fit_with_act_loss(
        trainer, task, config.dataset.trainer_model, say, config.fit_timeout_s, key="wave-1"
    )
    if status.error:
        raise RuntimeError(f"the fit failed: {status.error}")
    say(f"   {clients.describe_second_critic(status.metrics)}")


def second_critic_used(services: Supervisor) -> int:
    """How many decisions the sampler made with the second critic (its counter)."""
    found = parse_samples(fetch(services["sampler"].metrics_port) or "", SECOND_CRITIC)
    return int(sum(v for labels, v in found.items() if ("outcome", "used") in labels))


def table_3(config: DemoConfig, run_dir: Path, streamed: Streamed, say: Say) -> None:
    """Step 6: the service's own model on the test items, then Table 3 and its plots."""
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
    service_acc = service_model_accuracy(streamed.checkpoint_uri, data.test.raw, data.test.labels)
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
