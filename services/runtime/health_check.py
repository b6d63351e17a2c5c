"""``python -m services.runtime.health_check``: ask a service's gRPC health, over TLS if need be.

Exits 0 when the service answers SERVING, 1 otherwise (NOT_SERVING, no
answer, a refused handshake), 2 on bad options. Kubernetes' built-in gRPC
probes speak plaintext only, so a service that serves TLS is probed with this
command as an ``exec`` probe instead (see k8s/README.md, "gRPC TLS")::

    python -m services.runtime.health_check --target 127.0.0.1:50051 \\
        --tls-ca /etc/act/grpc-tls/ca.crt --tls-server-name review-gateway

The TLS options default to ``ACT_CLIENT_TLS_CA_FILE``, ``_CERT_FILE``,
``_KEY_FILE`` and ``_SERVER_NAME``, as in the other clients of the project.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime.grpc_client import (
    ClientTLS,
    GrpcTlsError,
    add_tls_arguments,
    channel,
    tls_from_arguments,
)


async def check(
    target: str, tls: ClientTLS | None, service: str = "", deadline_s: float = 3.0
) -> str:
    """The health status name of ``service`` at ``target`` (for example ``"SERVING"``)."""
    async with channel(target, tls) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=deadline_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 = SERVING)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.runtime.health_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port of the service")
    parser.add_argument("--service", default="", help="service name; empty = the whole server")
    parser.add_argument("--timeout", type=float, default=3.0, help="deadline, seconds")
    add_tls_arguments(parser)
    args = parser.parse_args(argv)
    try:
        client = tls_from_arguments(args)
        status = asyncio.run(check(args.target, client, args.service, args.timeout))
    except GrpcTlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
