"""Channels of the project's own gRPC clients: plaintext, TLS or mutual TLS.

``channel(target, None)`` is today's plaintext channel (local development);
``channel(target, ClientTLS(ca_file=...))`` verifies the server's certificate
against that CA, and with ``cert_file``/``key_file`` also presents a client
certificate (for servers that set ``grpc_tls_client_ca_file``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from services.runtime.grpc_tls import ClientTLS, GrpcTlsError

__all__ = [
    "ClientTLS",
    "GrpcTlsError",
    "add_tls_arguments",
    "channel",
    "client_credentials",
    "tls_from_arguments",
]


def add_tls_arguments(parser: argparse.ArgumentParser, server: str = "the server") -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-server-name`` of an
    argparse command, defaulting to ``ACT_CLIENT_TLS_*`` (plaintext without a CA)."""
    env = os.environ.get
    group = parser.add_argument_group("TLS (default: plaintext)")
    group.add_argument(
        "--tls-ca",
        type=Path,
        default=env("ACT_CLIENT_TLS_CA_FILE") or None,
        help=f"PEM CA of {server}'s certificate: connect with TLS (ACT_CLIENT_TLS_CA_FILE)",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        default=env("ACT_CLIENT_TLS_CERT_FILE") or None,
        help="PEM client certificate, for mutual TLS (ACT_CLIENT_TLS_CERT_FILE)",
    )
    group.add_argument(
        "--tls-key",
        type=Path,
        default=env("ACT_CLIENT_TLS_KEY_FILE") or None,
        help="PEM key of --tls-cert (ACT_CLIENT_TLS_KEY_FILE)",
    )
    group.add_argument(
        "--tls-server-name",
        default=env("ACT_CLIENT_TLS_SERVER_NAME", ""),
        help="name checked against the certificate (default: the target's host; "
        "ACT_CLIENT_TLS_SERVER_NAME)",
    )


def tls_from_arguments(args: argparse.Namespace) -> ClientTLS | None:
    """The :class:`ClientTLS` of :func:`add_tls_arguments`'s options (GrpcTlsError if bad)."""
    return ClientTLS.from_options(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)


def client_credentials(tls: ClientTLS) -> grpc.ChannelCredentials:
    """gRPC channel credentials of ``tls`` (its files are read now)."""
    ca, cert, key = tls.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def channel(
    target: str,
    tls: ClientTLS | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` (``host:port``); ``tls`` None = plaintext.

    Use it as ``async with channel(target, tls) as ch: ...``. Raises
    :class:`~services.runtime.grpc_tls.GrpcTlsError` when a TLS file cannot be read.
    """
    opts = list(options)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=opts)
    if tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(target, client_credentials(tls), options=opts)
