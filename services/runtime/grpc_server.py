"""The gRPC server every service runs: health, optional reflection, its own API.

Plaintext by default (local development); given a
:class:`~services.runtime.grpc_tls.ServerTLS` it listens with TLS only, and
requires client certificates when the TLS names a client CA (mutual TLS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.runtime.grpc_tls import ServerTLS

# (add_XServicer_to_server, servicer, full service name)
Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, str]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def server_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    """gRPC server credentials; client certificates are required when a client CA is set."""
    return grpc.ssl_server_credentials(
        [(tls.private_key, tls.cert_chain)],
        root_certificates=tls.client_ca,
        require_client_auth=tls.mutual,
    )


class GrpcServer:
    """A grpc.aio server with ``grpc.health.v1`` wired to the service's state.

    ``tls`` (None = plaintext) secures the one port it opens: with TLS there is
    no plaintext port at all. Health and reflection are served on that port.
    """

    def __init__(
        self,
        port: int,
        registrations: Sequence[Registration] = (),
        reflection_enabled: bool = False,
        host: str = "[::]",
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        *,
        max_receive_bytes: int = MAX_MESSAGE_BYTES,
        max_send_bytes: int = MAX_MESSAGE_BYTES,
        tls: ServerTLS | None = None,
    ) -> None:
        # Oversize calls are refused with RESOURCE_EXHAUSTED before any handler runs.
        self.server = grpc.aio.server(
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", max_receive_bytes),
                ("grpc.max_send_message_length", max_send_bytes),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = [name for _, _, name in registrations]
        for add, servicer, _ in registrations:
            add(servicer, self.server)
        if reflection_enabled:
            names = [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
            reflection.enable_server_reflection(names, self.server)
        address = f"{host}:{port}"
        self.tls = tls
        if tls is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, server_credentials(tls))

    async def start(self) -> None:
        """Start serving; health is NOT_SERVING until :meth:`set_serving`."""
        await self.server.start()
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def set_serving(self, serving: bool) -> None:
        """Report the overall and per-service health."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._set_all(status)

    async def _set_all(self, status: int) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Report NOT_SERVING, then stop accepting calls and finish running ones."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
