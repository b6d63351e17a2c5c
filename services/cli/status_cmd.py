"""``act status``: records per topic and each stage's consumer-group lag.

``--via grpc`` asks a PipelineStatusService instead (``--target host:port``)
and adds dead letters by reason and the per-task progress table.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import grpc
import typer
from act.v1 import api_pb2, api_pb2_grpc
from google.protobuf import json_format

from services.cli import status
from services.cli.common import BootstrapOpt, PrefixOpt, fail, run, settings
from services.runtime.grpc_client import channel


class Via(StrEnum):
    """Where ``act status`` gets its numbers."""

    direct = "direct"
    grpc = "grpc"


async def _get_status(
    target: str, task_id: str, partitions: bool, timeout_s: float
) -> api_pb2.PipelineStatus:
    async with channel(target) as ch:
        stub = api_pb2_grpc.PipelineStatusServiceStub(ch)
        request = api_pb2.GetStatusRequest(include_partitions=partitions, task_id=task_id)
        result: api_pb2.PipelineStatus = await stub.GetStatus(request, timeout=timeout_s)
        return result


def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    partitions: Annotated[bool, typer.Option(help="Per-partition offsets in the table.")] = False,
    group_prefix: Annotated[str, typer.Option(help="Prefix of the stages' consumer groups.")] = "",
    via: Annotated[
        Via,
        typer.Option(
            help="direct: read offsets from Kafka; grpc: ask a PipelineStatusService "
            "(adds per-task progress and dead letters by reason)."
        ),
    ] = Via.direct,
    target: Annotated[
        str,
        typer.Option(
            envvar="ACT_STATUS_ADDRESS",
            help="host:port of the PipelineStatusService: the ingest service (--via grpc).",
        ),
    ] = "127.0.0.1:50052",
    task: Annotated[str, typer.Option("--task", help="Only this task (--via grpc).")] = "",
    timeout: Annotated[float, typer.Option(help="Deadline of the gRPC call in seconds.")] = 30.0,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Records per topic and each stage's consumer-group lag.

    Record counts are estimates: end minus beginning offsets, so transaction
    markers (and aborted records) count. A group that has committed nothing
    has lag = all records of its topic. With ``--via grpc`` the server's
    settings decide the Kafka connection and group prefix.
    """
    if via is Via.grpc:
        try:
            answer = asyncio.run(_get_status(target, task, partitions, timeout))
        except grpc.aio.AioRpcError as exc:
            fail(f"{target}: {exc.code().name}: {exc.details()}")
        if as_json:
            typer.echo(json_format.MessageToJson(answer, always_print_fields_with_no_presence=True))
        else:
            typer.echo(status.render_proto(answer, partitions=partitions))
        return
    report = run(
        status.collect_status(settings(bootstrap, topic_prefix), group_prefix=group_prefix)
    )
    typer.echo(report.to_json() if as_json else status.render_table(report, partitions=partitions))
