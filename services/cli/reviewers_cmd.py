"""``act reviewers``: reviewer accounts of the review gateway (its gRPC admin calls)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated

import grpc
import typer
from act.v1 import api_pb2, api_pb2_grpc

from services.review_gateway.auth import bearer_metadata

reviewers_app = typer.Typer(help="Reviewer accounts of the review gateway.", no_args_is_help=True)

GatewayOpt = Annotated[
    str,
    typer.Option(
        "--gateway", envvar="ACT_GATEWAY_ADDRESS", help="host:port of the gateway's gRPC API."
    ),
]
_ROLES = {"reviewer": api_pb2.REVIEWER_ROLE_REVIEWER, "admin": api_pb2.REVIEWER_ROLE_ADMIN}


def _admin_token() -> str:
    token = os.environ.get("ACT_GATEWAY_ADMIN_TOKEN", "")
    if not token:
        typer.echo(
            "error: set ACT_GATEWAY_ADMIN_TOKEN (the gateway's bootstrap admin token, "
            "or an admin reviewer's token)",
            err=True,
        )
        raise typer.Exit(2)
    return token


async def _create(address: str, token: str, name: str, role: int) -> api_pb2.CreateReviewerResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = api_pb2_grpc.ReviewServiceStub(channel)
        request = api_pb2.CreateReviewerRequest(name=name, role=role)
        return await stub.CreateReviewer(request, metadata=bearer_metadata(token), timeout=10)


@reviewers_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Display name of the reviewer.")],
    role: Annotated[str, typer.Option(help="reviewer or admin.")] = "reviewer",
    gateway: GatewayOpt = "127.0.0.1:50051",
) -> None:
    """Create a reviewer; prints its id and token as JSON (the token is shown once).

    The admin token comes from ACT_GATEWAY_ADMIN_TOKEN, never from the command
    line (it would land in the shell history and the process list).
    """
    if role not in _ROLES:
        typer.echo(f"error: --role must be one of {', '.join(_ROLES)}", err=True)
        raise typer.Exit(2)
    token = _admin_token()
    try:
        created = asyncio.run(_create(gateway, token, name, _ROLES[role]))
    except grpc.aio.AioRpcError as exc:
        typer.echo(f"error: {exc.code().name}: {exc.details()}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"reviewer_id": created.reviewer_id, "token": created.token}))
