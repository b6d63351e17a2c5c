"""``act ingest``: publish items from a JSONL file, stdin or a built-in data set.

By default the items go straight to Kafka; ``--via grpc --target host:port``
streams them to the ingest service instead (``act.v1.IngestService.Ingest``),
which validates them again, keeps a ledger of accepted ids (a retried run
reports earlier items as duplicates) and needs a producer token
(``ACT_INGEST_TOKEN``, never a command-line argument).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import grpc
import typer
from act.v1 import api_pb2, api_pb2_grpc, item_pb2, task_pb2
from tqdm import tqdm

from services.cli import datasets, ingest, taskio
from services.cli.common import (
    MAX_BAD_LINES_SHOWN,
    BootstrapOpt,
    PrefixOpt,
    fail,
    run,
    settings,
)
from services.cli.reviewers_cmd import TlsCaOpt, TlsCertOpt, TlsKeyOpt, TlsServerNameOpt
from services.review_gateway.auth import bearer_metadata
from services.runtime.grpc_client import ClientTLS, GrpcTlsError, channel
from services.runtime.topics import default_catalog

#: gRPC status names by number (IngestError.code).
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class Via(StrEnum):
    """``--via`` choices: straight to Kafka, or through the ingest service."""

    kafka = "kafka"
    grpc = "grpc"


async def _grpc_task(target: str, tls: ClientTLS | None, token: str, task_id: str) -> task_pb2.Task:
    async with channel(target, tls) as ch:
        stub = api_pb2_grpc.IngestServiceStub(ch)
        request = api_pb2.GetTaskRequest(task_id=task_id)
        task: task_pb2.Task = await stub.GetTask(
            request, metadata=bearer_metadata(token), timeout=10
        )
        return task


async def _grpc_ingest(
    target: str,
    tls: ClientTLS | None,
    token: str,
    parsed: Iterable[ingest.Parsed],
    on_bad: Callable[[int, str], None],
) -> api_pb2.IngestSummary:
    """Stream the parsed items to the ingest service; bad records go to ``on_bad``."""

    async def items() -> AsyncIterator[item_pb2.Item]:
        for outcome in parsed:
            if outcome.item is None:
                on_bad(outcome.lineno, outcome.error or "unknown error")
                continue
            yield outcome.item

    async with channel(target, tls) as ch:
        stub = api_pb2_grpc.IngestServiceStub(ch)
        summary: api_pb2.IngestSummary = await stub.Ingest(items(), metadata=bearer_metadata(token))
        return summary


def _via_grpc(
    target: str, tls: ClientTLS | None, task: str, check_task: bool
) -> tuple[str, task_pb2.Task | None]:
    """The producer token and (when checked) the task, read through the service."""
    token = os.environ.get("ACT_INGEST_TOKEN", "")
    if not token:
        fail("--via grpc needs a producer token in ACT_INGEST_TOKEN", 2)
    if not check_task:
        return token, None
    try:
        return token, asyncio.run(_grpc_task(target, tls, token, task))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            fail(f"unknown task {task!r} (create it first, or --no-check-task)", 2)
        fail(f"{exc.code().name}: {exc.details()}")


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


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
    via: Annotated[
        Via, typer.Option(case_sensitive=False, help="kafka (direct) or grpc (ingest service).")
    ] = Via.kafka,
    target: Annotated[
        str, typer.Option(envvar="ACT_INGEST_ADDRESS", help="host:port of the ingest service.")
    ] = "127.0.0.1:50052",
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsServerNameOpt = "",
) -> None:
    """Publish items from a JSONL file (one JSON object per line) to the items topic.

    A line has `text` and/or an image (`image_path`, relative to the file;
    `image_b64`; `image_uri`), optionally `question` (VQA), `metadata` (object
    of strings), `id` (default: a stable hash of task id and line) and `label`
    (held-out reference label: a name of the task's labels or its index).
    Bad lines are reported and skipped; the exit code is then 1. With
    `--via grpc` the ingest service at `--target` publishes them (token in
    ACT_INGEST_TOKEN; `--tls-*` as for `act reviewers`); items it refuses
    are reported by id and also make the exit code 1.
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
    token, found_via = "", None
    tls: ClientTLS | None = None
    if via == Via.grpc:
        try:
            tls = ClientTLS.from_options(tls_ca, tls_cert, tls_key, tls_server_name)
            token, found_via = _via_grpc(target, tls, task, check_task)
        except GrpcTlsError as exc:
            fail(str(exc), 2)
        if found_via is not None:
            options = replace(
                options,
                labels=[label.name for label in found_via.labels],
                modality=found_via.modality,
            )
    elif check_task:
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

    if via == Via.grpc:
        _report_grpc(target, tls, token, parsed(options), on_bad)
        return
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


def _report_grpc(
    target: str,
    tls: ClientTLS | None,
    token: str,
    parsed: Iterable[ingest.Parsed],
    on_bad: Callable[[int, str], None],
) -> None:
    bad = 0

    def count_bad(lineno: int, reason: str) -> None:
        nonlocal bad
        bad += 1
        on_bad(lineno, reason)

    try:
        result = asyncio.run(_grpc_ingest(target, tls, token, parsed, count_bad))
    except GrpcTlsError as exc:
        fail(str(exc), 2)
    except grpc.aio.AioRpcError as exc:
        fail(f"{exc.code().name}: {exc.details()}")
    typer.echo(
        f"ingested {result.accepted} items via {target}; {result.duplicates} duplicates, "
        f"{result.rejected} refused"
    )
    for error in result.errors[:MAX_BAD_LINES_SHOWN]:
        code = _CODE_NAMES.get(error.code, str(error.code))
        typer.echo(f"item {error.item_id}: refused ({code}): {error.message}", err=True)
    if bad or result.rejected:
        typer.echo(f"error: {bad} bad lines skipped, {result.rejected} items refused", err=True)
        raise typer.Exit(1)
