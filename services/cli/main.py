"""``act``: the command-line tool of ACT stream.

Kafka connection settings come from the ``ACT_KAFKA_*`` environment variables
(:class:`services.runtime.config.KafkaSettings`); every command that talks to
Kafka also takes ``--bootstrap`` and ``--topic-prefix``.

Exit codes: 0 success, 1 runtime failure (broker, missing topic, bad input
lines), 2 invalid usage or an invalid task definition.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from act.v1 import common_pb2, task_pb2
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from tqdm import tqdm

from services.cli import datasets, dlq, ingest, status, taskio, tasks
from services.cli.kafkaio import TopicMissingError, kafka_settings
from services.evaluation.selection import render_report
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.logging import configure_logging
from services.runtime.topics import default_catalog

T = TypeVar("T")
MAX_BAD_LINES_SHOWN = 50

app = typer.Typer(
    name="act",
    help="ACT stream: define tasks, ingest items, watch the pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(
    help="Topics of the pipeline (protos/act/v1/topics.yaml).", no_args_is_help=True
)
task_app = typer.Typer(help="Tasks: label set, modality, strategies, budget.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters of the pipeline.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(task_app, name="task")
app.add_typer(dlq_app, name="dlq")

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="host:port[,...] of the brokers (default: ACT_KAFKA_BOOTSTRAP_SERVERS).",
    ),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--topic-prefix", help="Prefix of every topic name (default: ACT_KAFKA_TOPIC_PREFIX)."
    ),
]


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Modality(StrEnum):
    text = "text"
    image = "image"
    vqa = "vqa"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings(bootstrap: str | None, topic_prefix: str | None) -> KafkaSettings:
    try:
        return kafka_settings(bootstrap, topic_prefix)
    except ValidationError as exc:
        fail(f"invalid ACT_KAFKA_* settings: {exc}", 2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning Kafka failures into a message and exit code 1."""
    try:
        return asyncio.run(coro)
    except TopicMissingError as exc:
        fail(str(exc))
    except KafkaError as exc:
        text = str(exc)
        name = type(exc).__name__
        fail(f"kafka: {text if text.startswith(name) else f'{name}: {text}'}")
    except TimeoutError as exc:
        fail(f"timed out: {exc}")


@app.callback()
def main(
    log_level: Annotated[
        LogLevel,
        typer.Option("--log-level", envvar="ACT_CLI_LOG_LEVEL", help="Structured logs on stderr."),
    ] = LogLevel.WARNING,
) -> None:
    """ACT stream command-line tool."""
    configure_logging("act-cli", level=log_level.value, json=True)


# ---------------------------------------------------------------- topics


@topics_app.command("ensure")
def topics_ensure(
    replication: Annotated[
        int | None, typer.Option(min=1, help="Replication factor (default: the spec's; 1 locally).")
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Override every topic's partition count (tests).")
    ] = None,
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="Only this topic id (repeatable).")
    ] = None,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Create the spec's missing topics; print each as created or existing."""
    kafka = settings(bootstrap, topic_prefix)
    catalog = default_catalog()
    for topic_id in topic or []:
        try:
            catalog.get(topic_id)
        except ValueError as exc:
            fail(str(exc), 2)
    result = run(
        ensure_topics(
            kafka, replication=replication, partitions=partitions, topic_ids=topic or None
        )
    )
    for name in result.created:
        typer.echo(f"created   {name}")
    for name in result.existing:
        typer.echo(f"existing  {name}")


@topics_app.command("list")
def topics_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Print the topic spec: id, full name, partitions, message type, key."""
    prefix = topic_prefix if topic_prefix is not None else settings(None, None).topic_prefix
    rows = [
        {
            "id": spec.id,
            "name": spec.full_name(prefix),
            "partitions": spec.partitions,
            "message": spec.message,
            "key": spec.key,
            "config": dict(spec.config),
        }
        for spec in default_catalog()
    ]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    typer.echo(
        status.format_table(
            ["ID", "NAME", "PARTITIONS", "MESSAGE", "KEY"],
            [(r["id"], r["name"], r["partitions"], r["message"], r["key"]) for r in rows],
        )
    )


# ---------------------------------------------------------------- task


@task_app.command("create")
def task_create(
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Task definition (YAML or JSON); flags override it."),
    ] = None,
    task_id: Annotated[str | None, typer.Option(help="Task id (default: a new uuid4 hex).")] = None,
    name: Annotated[str | None, typer.Option(help="Human-readable name.")] = None,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated label names, e.g. ham,spam.")
    ] = None,
    modality: Annotated[
        Modality | None, typer.Option(case_sensitive=False, help="Item content kind.")
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Share of items for human review, in (0, 1].")
    ] = None,
    rule: Annotated[
        str | None, typer.Option(help="Sampling rule: threshold, exponential or normalization.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="Sampling mode: batch or streaming.")] = None,
    annotation_strategy: Annotated[
        str | None, typer.Option(help="naive or cot (default naive).")
    ] = None,
    critique_strategy: Annotated[
        str | None,
        typer.Option(
            help="naive, cot, multiple-choice, devils-advocate, naive-logit, cot-logit, "
            "cot-perplexity (default naive)."
        ),
    ] = None,
    instructions: Annotated[
        str | None, typer.Option(help="Task description for the prompts.")
    ] = None,
    annotator_model: Annotated[
        str | None, typer.Option(help="provider:model, e.g. openai:gpt-4o.")
    ] = None,
    critic_model: Annotated[
        str | None, typer.Option(help="provider:model of the criticizer.")
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Publish even if a different task with this id exists.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Validate and print the task; publish nothing.")
    ] = False,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Validate a task and publish it to the tasks topic; print its id."""
    flags = {
        "task_id": task_id,
        "name": name,
        "labels": labels,
        "modality": modality.value if modality else None,
        "budget": budget,
        "rule": rule,
        "mode": mode,
        "annotation_strategy": annotation_strategy,
        "critique_strategy": critique_strategy,
        "instructions": instructions,
        "annotator_model": annotator_model,
        "critic_model": critic_model,
    }
    try:
        task = tasks.build_task(tasks.load_task_file(file) if file else None, flags)
    except tasks.TaskError as exc:
        fail(str(exc), 2)
    if dry_run:
        typer.echo(tasks.task_to_json(task))
        return
    kafka = settings(bootstrap, topic_prefix)
    existing = run(taskio.load_tasks(kafka)).get(task.task_id)
    if existing is not None and tasks.same_definition(existing, task):
        typer.echo(task.task_id)  # idempotent: identical task already published
        return
    if existing is not None and not replace:
        fail(f"task {task.task_id!r} already exists with another definition (use --replace)", 2)
    run(taskio.publish_task(kafka, task))
    typer.echo(task.task_id)


@task_app.command("get")
def task_get(
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Print the latest version of a task as JSON."""
    found = run(taskio.load_tasks(settings(bootstrap, topic_prefix))).get(task_id)
    if found is None:
        fail(f"task {task_id!r} not found")
    typer.echo(tasks.task_to_json(found))


@task_app.command("list")
def task_list(bootstrap: BootstrapOpt = None, topic_prefix: PrefixOpt = None) -> None:
    """Print the latest version of every task, one JSON object per line."""
    found = run(taskio.load_tasks(settings(bootstrap, topic_prefix)))
    for task in sorted(found.values(), key=lambda t: (t.created_at.ToNanoseconds(), t.task_id)):
        typer.echo(tasks.task_to_json(task, indent=None))


# ---------------------------------------------------------------- ingest


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


@app.command("ingest")
def ingest_cmd(
    task: Annotated[str, typer.Option("--task", help="Id of the task the items belong to.")],
    file: Annotated[
        str | None,
        typer.Argument(help="JSONL file of records, or - for stdin.", show_default=False),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help=f"A built-in data set instead of FILE ({', '.join(sorted(datasets.REGISTRY))})."
        ),
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option(help="Mark the items as one bounded batch (batch sampling).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Items in the batch (default: the valid records of FILE or the data set)."
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Item.source (default: file or data set name).")
    ] = None,
    check_task: Annotated[
        bool,
        typer.Option("--check-task/--no-check-task", help="Verify that the task exists first."),
    ] = True,
    max_inline_bytes: Annotated[
        int, typer.Option(min=1, help="Largest image sent inline; larger ones need image_uri.")
    ] = ingest.DEFAULT_MAX_INLINE_BYTES,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Publish items from a JSONL file (one JSON object per line) to the items topic.

    A line has `text` and/or an image (`image_path`, relative to the file;
    `image_b64`; `image_uri`), optionally `question` (VQA), `metadata` (object
    of strings), `id` (default: a stable hash of task id and line) and `label`
    (held-out reference label: a name of the task's labels or its index).
    Bad lines are reported and skipped; the exit code is then 1.
    """
    if (file is None) == (dataset is None):
        fail("give exactly one of FILE (or -) and --dataset", 2)
    kafka = settings(bootstrap, topic_prefix)
    topic = default_catalog().name("items", kafka.topic_prefix)
    src: datasets.DatasetSource | None = None
    if dataset is not None:
        try:
            src = datasets.get_source(dataset)
            datasets.ensure_available(src)
        except datasets.UnknownDatasetError as exc:
            fail(str(exc), 2)
        except datasets.DatasetMissingError as exc:
            fail(str(exc))
    path = Path(file) if file not in (None, "-") else None
    if path is not None and not path.is_file():
        fail(f"no such file: {path}", 2)
    if batch_id and batch_size is None and file == "-":
        fail("--batch-size is required with --batch-id when reading stdin", 2)
    if batch_size is not None and not batch_id:
        fail("--batch-size needs --batch-id", 2)

    options = ingest.IngestOptions(
        task_id=task,
        source=source or (src.name if src else path.name if path else "stdin"),
        base_dir=path.parent if path else Path.cwd(),
        max_inline_bytes=max_inline_bytes,
    )
    if check_task:
        found = run(taskio.load_tasks(kafka)).get(task)
        if found is None:
            fail(f"unknown task {task!r} (create it with `act task create`, or --no-check-task)", 2)
        options = replace(
            options, labels=[label.name for label in found.labels], modality=found.modality
        )

    def parsed(opts: ingest.IngestOptions) -> Iterator[ingest.Parsed]:
        if src is not None:
            return ingest.parse_records(src.iter_records(), opts)
        if path is not None:
            return ingest.parse_lines(_file_lines(path), opts)
        return ingest.parse_lines(sys.stdin.buffer, opts)

    total: int | None = None
    if path is not None:
        total = sum(1 for line in _file_lines(path) if line.strip())
    if batch_id:
        if batch_size is None:
            batch_size = ingest.count_items(parsed(options))
            total = total if total is not None else batch_size
        options = replace(options, batch_id=batch_id, batch_size=batch_size)

    shown = 0

    def on_bad(lineno: int, reason: str) -> None:
        nonlocal shown
        shown += 1
        if shown <= MAX_BAD_LINES_SHOWN:
            tqdm.write(f"line {lineno}: {reason}", file=sys.stderr)
        elif shown == MAX_BAD_LINES_SHOWN + 1:
            tqdm.write("(further bad lines not shown)", file=sys.stderr)

    summary = run(
        ingest.ingest_to_kafka(
            kafka,
            parsed(options),
            topic=topic,
            task_id=task,
            total=total,
            progress=not quiet and sys.stderr.isatty(),
            on_bad=on_bad,
        )
    )
    typer.echo(summary.describe())
    for item_id, error in summary.failed[:MAX_BAD_LINES_SHOWN]:
        typer.echo(f"item {item_id}: not published: {error}", err=True)
    if not summary.ok:
        typer.echo(
            f"error: {len(summary.bad)} bad lines skipped, "
            f"{len(summary.failed)} items not published",
            err=True,
        )
        raise typer.Exit(1)


# ---------------------------------------------------------------- select-models


@app.command("select-models")
def select_models_cmd(
    candidate: Annotated[
        list[str],
        typer.Option(
            "--candidate",
            "-c",
            help="A candidate model (repeatable): fewshot:SPEC[:K] "
            "(e.g. fewshot:logreg-minilm:16), openai:MODEL[@BASE_URL] (any OpenAI-compatible "
            "server) or anthropic:MODEL.",
        ),
    ],
    dataset: Annotated[
        str | None,
        typer.Option(help="A built-in labelled data set (spam-assassin, fashion-mnist, ...)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="JSONL of human-labelled texts: {text, label[, id]}."),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help="Evaluate on this many items (default 200 for --dataset)."),
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Label names in index order for --file (default: sorted).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the item sample and the few-shot seeds.")] = 0,
    annotation_strategy: Annotated[str, typer.Option(help="naive or cot.")] = "naive",
    critique_strategy: Annotated[
        str, typer.Option(help="Criticizer strategy (naive, cot, multiple-choice, ...).")
    ] = "cot",
    pairs: Annotated[
        str,
        typer.Option(
            help="Pairs to criticise: all (every annotator x critic) or recommended "
            "(the best annotator with itself and the second best)."
        ),
    ] = "all",
    concurrency: Annotated[int, typer.Option(min=1, help="Model calls in flight.")] = 32,
    buffer: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Budget buffer over the ideal budget.")
    ] = 0.10,
    instructions: Annotated[
        str | None, typer.Option(help="Task description for LLM candidates' prompts.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress messages.")] = False,
) -> None:
    """Rank candidate models on human-labelled items; recommend annotator, critic, budget.

    The paper's guideline (section 4.3): the most accurate candidate annotates,
    the second most accurate criticises. Reports every candidate's annotation
    accuracy, each annotator-critic pair's ABS, the ideal budget (the
    annotator's error rate) and the recommended budget (+10 points).
    """
    from services.evaluation import candidates as cands
    from services.fewshot import pools

    if (dataset is None) == (file is None):
        fail("give exactly one of --dataset and --file", 2)
    if pairs not in ("all", "recommended"):
        fail("--pairs must be all or recommended", 2)
    try:
        specs = [cands.parse_candidate(c) for c in candidate]
        a_strategy = tasks.parse_enum(
            common_pb2.AnnotationStrategy,
            "ANNOTATION_STRATEGY_",
            annotation_strategy,
            "annotation_strategy",
        )
        c_strategy = tasks.parse_enum(
            common_pb2.CritiqueStrategy,
            "CRITIQUE_STRATEGY_",
            critique_strategy,
            "critique_strategy",
        )
    except (cands.CandidateError, tasks.TaskError) as exc:
        fail(str(exc), 2)
    if len({s.name for s in specs}) != len(specs):
        fail("each --candidate must be different", 2)
    fewshot_specs = [s for s in specs if isinstance(s, cands.FewShotSpec)]
    try:
        if dataset is not None:
            pool = pools.builtin_pool(dataset)
        else:
            assert file is not None
            names = tasks.split_labels(labels) if labels else None
            pool = pools.text_pool_from_jsonl(file, names)
        sets = cands.plan_sets(
            pool,
            n=n if n is not None or file is not None else 200,
            seed=seed,
            fewshot=fewshot_specs,
            seed_first=file is not None,
        )
    except datasets.DatasetMissingError as exc:
        fail(str(exc))
    except (ValueError, OSError) as exc:
        fail(str(exc), 2)
    for spec in fewshot_specs:
        from services.fewshot.model import MODEL_SPECS

        if MODEL_SPECS[spec.spec].modality != pool.modality:
            fail(
                f"{spec.name} is a model for {MODEL_SPECS[spec.spec].modality} data; "
                f"the data is {pool.modality}",
                2,
            )

    def say(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    modality = common_pb2.MODALITY_TEXT if pool.modality == "text" else common_pb2.MODALITY_IMAGE
    task = task_pb2.Task(
        task_id="select-models",
        name=f"model selection on {pool.name}",
        labels=[task_pb2.Label(index=i, name=name) for i, name in enumerate(pool.label_names)],
        modality=modality,
        instructions=instructions
        or f"Classify the {pool.modality} into exactly one of the labels.",
        annotation_strategy=a_strategy,
        critique_strategy=c_strategy,
    )
    items = sets.eval_pool.items(range(len(sets.eval_pool)), task.task_id)
    human = [int(v) for v in sets.eval_pool.labels]

    async def go() -> cands.SelectionRun:
        built: list[cands.Candidate] = []
        try:
            for spec in specs:
                say(f"preparing {spec.name}")
                if isinstance(spec, cands.FewShotSpec):
                    built.append(
                        await asyncio.to_thread(
                            cands.build_fewshot_candidate, spec, sets.seed_pool, seed
                        )
                    )
                else:
                    built.append(cands.build_llm_candidate(spec))
            return await cands.run_selection(
                built,
                task,
                items,
                human,
                annotation_strategy=a_strategy,
                critique_strategy=c_strategy,
                pairs="all" if pairs == "all" else "recommended",
                concurrency=concurrency,
                buffer=buffer,
                progress=say,
            )
        finally:
            await cands.close_candidates(built)

    try:
        outcome = asyncio.run(go())
    except (cands.CandidateError, ValueError) as exc:
        fail(str(exc), 2)
    report = outcome.report
    if as_json:
        payload = report.to_dict()
        payload["errors"] = {k: v[:MAX_BAD_LINES_SHOWN] for k, v in outcome.errors.items()}
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(render_report(report))
        for name, errs in outcome.errors.items():
            typer.echo(f"warning: {name}: {len(errs)} failed calls, first: {errs[0]}", err=True)


# ---------------------------------------------------------------- status


@app.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    partitions: Annotated[bool, typer.Option(help="Per-partition offsets in the table.")] = False,
    group_prefix: Annotated[str, typer.Option(help="Prefix of the stages' consumer groups.")] = "",
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Records per topic and each stage's consumer-group lag.

    Record counts are estimates: end minus beginning offsets, so transaction
    markers (and aborted records) count. A group that has committed nothing
    has lag = all records of its topic.
    """
    report = run(
        status.collect_status(settings(bootstrap, topic_prefix), group_prefix=group_prefix)
    )
    typer.echo(report.to_json() if as_json else status.render_table(report, partitions=partitions))


# ---------------------------------------------------------------- dlq


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, help="Show at most the newest N dead letters.")] = 50,
    stage: Annotated[str | None, typer.Option(help="Only this stage's dead letters.")] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Only this task's dead letters.")
    ] = None,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Print dead letters as JSON lines (oldest first), never their payloads."""
    rows, bad = run(
        dlq.list_dead_letters(
            settings(bootstrap, topic_prefix), limit=limit, stage=stage, task_id=task
        )
    )
    for row in rows:
        typer.echo(json.dumps(row, ensure_ascii=False))
    if bad:
        typer.echo(f"warning: {bad} undecodable dead-letter records skipped", err=True)


if __name__ == "__main__":
    app(prog_name="act")
