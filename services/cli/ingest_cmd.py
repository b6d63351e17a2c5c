"""``act ingest``: publish items from a JSONL file, stdin or a built-in data set."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
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
from services.runtime.topics import default_catalog


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
