"""``act task``: validate and publish task definitions, read them back."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from services.cli import taskio, tasks
from services.cli.common import BootstrapOpt, PrefixOpt, fail, run, settings

task_app = typer.Typer(help="Tasks: label set, modality, strategies, budget.", no_args_is_help=True)


class Modality(StrEnum):
    """``--modality`` choices (the ``act.v1.Modality`` values without their prefix)."""

    text = "text"
    image = "image"
    vqa = "vqa"


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
    sensitive_label: Annotated[
        list[str] | None,
        typer.Option(
            "--sensitive-label",
            metavar="NAME",
            help="A label whose items reviewers see blurred or masked until revealed, "
            "with their exposure counted (repeatable).",
        ),
    ] = None,
    show_machine_label: Annotated[
        bool | None,
        typer.Option(
            "--show-machine-label/--hide-machine-label",
            help="Show reviewers the machine label (it anchors them; default: hide).",
            show_default=False,
        ),
    ] = None,
    show_critique: Annotated[
        bool | None,
        typer.Option(
            "--show-critique/--hide-critique",
            help="Show reviewers the critic's eps and rationale (default: hide).",
            show_default=False,
        ),
    ] = None,
    overlap_fraction: Annotated[
        float | None,
        typer.Option(
            help="Share of reviewed items also sent to a second reviewer, in [0, 1] (default 0)."
        ),
    ] = None,
    exposure_break_after: Annotated[
        int | None,
        typer.Option(
            metavar="SECONDS",
            help="Prompt a break after this many seconds of revealed sensitive content "
            "(default: the gateway's).",
        ),
    ] = None,
    exposure_daily_cap: Annotated[
        int | None,
        typer.Option(
            metavar="SECONDS",
            help="Per reviewer, sensitive label and UTC day: no more leases after this many "
            "seconds revealed (default: the gateway's).",
        ),
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
        "sensitive_labels": sensitive_label or None,
        "show_machine_label": show_machine_label,
        "show_critique": show_critique,
        "overlap_fraction": overlap_fraction,
        "exposure_break_after_s": exposure_break_after,
        "exposure_daily_cap_s": exposure_daily_cap,
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
