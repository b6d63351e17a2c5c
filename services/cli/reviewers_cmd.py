"""``act reviewers``: reviewer accounts of the review gateway (its gRPC admin calls)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import grpc
import typer
from act.v1 import api_pb2, api_pb2_grpc

from services.review_gateway.auth import bearer_metadata
from services.runtime.grpc_client import ClientTLS, GrpcTlsError, channel

reviewers_app = typer.Typer(help="Reviewer accounts of the review gateway.", no_args_is_help=True)

GatewayOpt = Annotated[
    str,
    typer.Option(
        "--gateway", envvar="ACT_GATEWAY_ADDRESS", help="host:port of the gateway's gRPC API."
    ),
]
TlsCaOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-ca",
        envvar="ACT_CLIENT_TLS_CA_FILE",
        help="PEM CA of the gateway's certificate: connect with TLS (default: plaintext).",
    ),
]
TlsCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert",
        envvar="ACT_CLIENT_TLS_CERT_FILE",
        help="PEM client certificate, for a gateway that requires one (mutual TLS).",
    ),
]
TlsKeyOpt = Annotated[
    Path | None,
    typer.Option("--tls-key", envvar="ACT_CLIENT_TLS_KEY_FILE", help="PEM key of --tls-cert."),
]
TlsServerNameOpt = Annotated[
    str,
    typer.Option(
        "--tls-server-name",
        envvar="ACT_CLIENT_TLS_SERVER_NAME",
        help="Name to check the gateway's certificate against (default: the host of --gateway).",
    ),
]
_ROLES = {
    "reviewer": api_pb2.REVIEWER_ROLE_REVIEWER,
    "admin": api_pb2.REVIEWER_ROLE_ADMIN,
    "producer": api_pb2.REVIEWER_ROLE_PRODUCER,  # a token for the ingest service
}


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


async def _create(
    address: str, token: str, name: str, role: int, tls: ClientTLS | None = None
) -> api_pb2.CreateReviewerResponse:
    async with channel(address, tls) as ch:
        stub = api_pb2_grpc.ReviewServiceStub(ch)
        request = api_pb2.CreateReviewerRequest(name=name, role=role)
        return await stub.CreateReviewer(request, metadata=bearer_metadata(token), timeout=10)


@reviewers_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Display name of the reviewer.")],
    role: Annotated[str, typer.Option(help="reviewer, admin or producer.")] = "reviewer",
    gateway: GatewayOpt = "127.0.0.1:50051",
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsServerNameOpt = "",
) -> None:
    """Create a reviewer; prints its id and token as JSON (the token is shown once).

    The admin token comes from ACT_GATEWAY_ADMIN_TOKEN, never from the command
    line (it would land in the shell history and the process list). With
    ``--tls-ca`` the call goes over TLS; ``--tls-cert``/``--tls-key`` add a
    client certificate (mutual TLS).
    """
    if role not in _ROLES:
        typer.echo(f"error: --role must be one of {', '.join(_ROLES)}", err=True)
        raise typer.Exit(2)
    try:
        tls = ClientTLS.from_options(tls_ca, tls_cert, tls_key, tls_server_name)
    except GrpcTlsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    token = _admin_token()
    try:
        created = asyncio.run(_create(gateway, token, name, _ROLES[role], tls))
    except GrpcTlsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except grpc.aio.AioRpcError as exc:
        typer.echo(f"error: {exc.code().name}: {exc.details()}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"reviewer_id": created.reviewer_id, "token": created.token}))
