"""``act status``: records per topic and each stage's consumer-group lag."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli import status
from services.cli.common import BootstrapOpt, PrefixOpt, run, settings


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
