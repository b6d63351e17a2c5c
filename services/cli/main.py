"""``act``: the command-line tool of ACT stream.

Kafka connection settings come from the ``ACT_KAFKA_*`` environment variables
(:class:`services.runtime.config.KafkaSettings`); every command that talks to
Kafka also takes ``--bootstrap`` and ``--topic-prefix``.

Exit codes: 0 success, 1 runtime failure (broker, missing topic, bad input
lines), 2 invalid usage or an invalid task definition.

This module is the entry point (``act = "services.cli.main:app"``) and only
assembles the app; each command group lives in its own ``*_cmd`` module, the
options and error handling they share in :mod:`services.cli.common`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from services.cli.dlq_cmd import dlq_app
from services.cli.ingest_cmd import ingest_cmd
from services.cli.reviewers_cmd import reviewers_app
from services.cli.select_cmd import select_models_cmd
from services.cli.status_cmd import status_cmd
from services.cli.tasks_cmd import task_app
from services.cli.topics_cmd import topics_app
from services.runtime.logging import configure_logging

app = typer.Typer(
    name="act",
    help="ACT stream: define tasks, ingest items, watch the pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# `act --help` lists single commands first, then groups, each in registration
# order: keep this order so the help stays as it was.
app.command("ingest")(ingest_cmd)
app.command("select-models")(select_models_cmd)
app.command("status")(status_cmd)
app.add_typer(topics_app, name="topics")
app.add_typer(task_app, name="task")
app.add_typer(dlq_app, name="dlq")
app.add_typer(reviewers_app, name="reviewers")


class LogLevel(StrEnum):
    """``--log-level`` choices."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@app.callback()
def main(
    log_level: Annotated[
        LogLevel,
        typer.Option("--log-level", envvar="ACT_CLI_LOG_LEVEL", help="Structured logs on stderr."),
    ] = LogLevel.WARNING,
) -> None:
    """ACT stream command-line tool."""
    configure_logging("act-cli", level=log_level.value, json=True)


if __name__ == "__main__":
    app(prog_name="act")
