"""``act topics``: create the topics of the spec (protos/act/v1/topics.yaml) and list them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli import status
from services.cli.common import BootstrapOpt, PrefixOpt, fail, run, settings
from services.runtime.admin import ensure_topics
from services.runtime.topics import default_catalog

topics_app = typer.Typer(
    help="Topics of the pipeline (protos/act/v1/topics.yaml).", no_args_is_help=True
)


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
