"""``act dlq``: the dead letters of the pipeline, without their payloads."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli import dlq
from services.cli.common import BootstrapOpt, PrefixOpt, run, settings

dlq_app = typer.Typer(help="Dead letters of the pipeline.", no_args_is_help=True)


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
