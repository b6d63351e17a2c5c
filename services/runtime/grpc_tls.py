"""TLS material of the project's gRPC servers and clients, read from PEM files.

A server is given :class:`ServerTLS` (its certificate chain and key, and
optionally the CA whose client certificates it accepts: mutual TLS); a client
:class:`ClientTLS` (the CA it trusts, optionally its own certificate and key).
Both are plain data: :mod:`services.runtime.grpc_server` and
:mod:`services.runtime.grpc_client` turn them into gRPC credentials.

Files are read once, when a process starts. A missing, unreadable or non-PEM
file raises :class:`GrpcTlsError` naming the setting and the path; the
contents (key material) never appear in an error, a log line or a ``repr``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

_PEM_BEGIN = b"-----BEGIN "


class GrpcTlsError(ValueError):
    """A TLS setting names a file that cannot be used (missing, unreadable, not PEM)."""


def read_pem(path: Path, setting: str, *, kind: str = "") -> bytes:
    """The bytes of a PEM file; ``setting`` names where the path came from in errors.

    ``kind`` (for example ``"CERTIFICATE"`` or ``"PRIVATE KEY"``) is a block type
    the file must contain. The file's contents never appear in an error.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GrpcTlsError(f"{setting}: cannot read {str(path)!r}: {reason}") from None
    if _PEM_BEGIN not in data:
        raise GrpcTlsError(f"{setting}: {str(path)!r} is not a PEM file")
    if kind and f"{kind}-----".encode() not in data:
        raise GrpcTlsError(f"{setting}: {str(path)!r} holds no PEM {kind}")
    return data


@dataclass(frozen=True)
class ServerTLS:
    """A gRPC server's TLS: its certificate chain and key, and an optional client CA.

    With ``client_ca`` set, every client must present a certificate signed by
    that CA (mutual TLS); without it, any client that trusts the server's
    certificate may call.
    """

    cert_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate (mutual TLS)."""
        return self.client_ca is not None

    @classmethod
    def from_files(
        cls,
        cert_file: Path,
        key_file: Path,
        client_ca_file: Path | None = None,
        *,
        names: tuple[str, str, str] = (
            "grpc_tls_cert_file",
            "grpc_tls_key_file",
            "grpc_tls_client_ca_file",
        ),
    ) -> ServerTLS:
        """Read the PEM files; ``names`` are the settings named in errors."""
        cert_name, key_name, ca_name = names
        tls = cls(
            cert_chain=read_pem(cert_file, cert_name, kind="CERTIFICATE"),
            private_key=read_pem(key_file, key_name, kind="PRIVATE KEY"),
            client_ca=(
                read_pem(client_ca_file, ca_name, kind="CERTIFICATE")
                if client_ca_file is not None
                else None
            ),
        )
        # gRPC only says "Failed to bind" for a key that does not fit its
        # certificate: check the pair (and the CA) with OpenSSL first.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            # A password callback, so that an encrypted key fails instead of prompting.
            context.load_cert_chain(cert_file, key_file, password=lambda: b"")
        except ssl.SSLError as exc:
            raise GrpcTlsError(
                f"{cert_name} and {key_name}: not a usable certificate and key pair "
                f"(a key that does not match, or an encrypted key): {exc.reason or exc}"
            ) from None
        if client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=client_ca_file)
            except ssl.SSLError as exc:
                raise GrpcTlsError(f"{ca_name}: not a usable CA bundle: {exc.reason}") from None
        return tls


@dataclass(frozen=True)
class ClientTLS:
    """How a client of the project's gRPC servers uses TLS (paths, read on use).

    ``ca_file`` is the CA that signed the server's certificate; ``cert_file``
    and ``key_file`` (both or neither) are the client's own certificate for
    servers that require one (mutual TLS). ``server_name`` overrides the name
    checked against the server's certificate (for example when a port-forward
    makes the server ``127.0.0.1``); empty = the target's host.
    """

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str = ""

    def __post_init__(self) -> None:
        """Refuse a client certificate without its key, or a key without its certificate."""
        if (self.cert_file is None) != (self.key_file is None):
            raise GrpcTlsError("client TLS: give both the certificate and its key, or neither")

    @classmethod
    def from_options(
        cls,
        ca_file: Path | None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        server_name: str = "",
    ) -> ClientTLS | None:
        """The client TLS that command-line options describe; None = plaintext.

        TLS is on when a CA file is given; a client certificate or key without
        a CA file is an error (it would otherwise be ignored silently).
        """
        if ca_file is None:
            if cert_file is not None or key_file is not None or server_name:
                raise GrpcTlsError(
                    "client TLS: a client certificate, key or server name needs the CA file too"
                )
            return None
        return cls(ca_file, cert_file, key_file, server_name)

    def read(self) -> tuple[bytes, bytes | None, bytes | None]:
        """(CA, client certificate chain or None, client key or None) as PEM bytes."""
        ca = read_pem(self.ca_file, "client TLS CA file", kind="CERTIFICATE")
        if self.cert_file is None or self.key_file is None:
            return ca, None, None
        cert = read_pem(self.cert_file, "client TLS certificate file", kind="CERTIFICATE")
        key = read_pem(self.key_file, "client TLS key file", kind="PRIVATE KEY")
        return ca, cert, key
