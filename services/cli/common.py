"""What every ``act`` command shares: the Kafka options, settings, errors and exit codes.

Exit codes: 0 success, 1 runtime failure (broker, missing topic, bad input
lines), 2 invalid usage or an invalid task definition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from services.cli.kafkaio import TopicMissingError, kafka_settings
from services.runtime.config import KafkaSettings

T = TypeVar("T")

#: Bad input lines and failed calls printed at most (the rest are only counted).
MAX_BAD_LINES_SHOWN = 50

#: ``--bootstrap`` of every command that talks to Kafka.
BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="host:port[,...] of the brokers (default: ACT_KAFKA_BOOTSTRAP_SERVERS).",
    ),
]
#: ``--topic-prefix`` of every command that names topics.
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--topic-prefix", help="Prefix of every topic name (default: ACT_KAFKA_TOPIC_PREFIX)."
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings(bootstrap: str | None, topic_prefix: str | None) -> KafkaSettings:
    """``ACT_KAFKA_*`` settings with the command-line overrides; invalid ones exit with 2."""
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
