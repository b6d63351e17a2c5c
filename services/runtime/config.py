"""Settings shared by every service.

Each service has one settings class with its own environment prefix (for
example ``ACT_ANNOTATOR_``) that extends :class:`StageSettings`; the Kafka
connection is shared by all services and read from ``ACT_KAFKA_``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.grpc_tls import ServerTLS


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster (env prefix ``ACT_KAFKA_``)."""

    model_config = SettingsConfigDict(env_prefix="ACT_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of brokers."
    )
    topic_prefix: str = Field(
        "", description="Prepended to every topic name; empty in production, unique per test."
    )
    client_id: str = "act-stream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    request_timeout_ms: int = Field(40_000, ge=1_000)

    def client_kwargs(self) -> dict[str, object]:
        """Connection keyword arguments common to aiokafka clients."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return kwargs


class ServiceSettings(BaseSettings):
    """Settings every service has: logging, metrics, the gRPC port and its TLS.

    gRPC is plaintext unless ``grpc_tls_cert_file`` and ``grpc_tls_key_file``
    are set (both or neither); then the server listens with TLS only, and with
    ``grpc_tls_client_ca_file`` also requires client certificates signed by
    that CA (mutual TLS). Each service reads them with its own prefix, for
    example ``ACT_SAMPLER_GRPC_TLS_CERT_FILE``.
    """

    model_config = SettingsConfigDict(env_prefix="ACT_", extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    metrics_port: int = Field(9464, ge=0, le=65535, description="0 disables /metrics.")
    grpc_port: int = Field(
        50051, ge=0, le=65535, description="gRPC (health and service API); 0 = any free port."
    )
    grpc_reflection: bool = Field(False, description="Enable server reflection (not in prod).")
    grpc_tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate chain of the gRPC server; set with grpc_tls_key_file "
        "to serve TLS only (no plaintext port). Unset = plaintext.",
    )
    grpc_tls_key_file: Path | None = Field(
        None, description="PEM private key of grpc_tls_cert_file (never logged)."
    )
    grpc_tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle: when set, clients must present a certificate signed by "
        "it (mutual TLS). Needs grpc_tls_cert_file and grpc_tls_key_file.",
    )
    environment: Literal["dev", "test", "production"] = "dev"

    @field_validator(
        "grpc_tls_cert_file", "grpc_tls_key_file", "grpc_tls_client_ca_file", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (a blank ConfigMap entry) means unset, not the path ".".
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_grpc_tls(self) -> Self:
        cert, key = self.grpc_tls_cert_file, self.grpc_tls_key_file
        if (cert is None) != (key is None):
            given, missing = (
                ("grpc_tls_cert_file", "grpc_tls_key_file")
                if key is None
                else ("grpc_tls_key_file", "grpc_tls_cert_file")
            )
            raise ValueError(
                f"{given} is set but {missing} is not: set both "
                "(ACT_<SERVICE>_GRPC_TLS_CERT_FILE and _KEY_FILE) or neither"
            )
        if self.grpc_tls_client_ca_file is not None and cert is None:
            raise ValueError(
                "grpc_tls_client_ca_file needs grpc_tls_cert_file and grpc_tls_key_file "
                "(mutual TLS runs over TLS)"
            )
        return self

    def grpc_server_tls(self) -> ServerTLS | None:
        """The gRPC server's TLS material, read from the files now; None = plaintext.

        Raises :class:`~services.runtime.grpc_tls.GrpcTlsError` naming the
        setting when a file is missing, unreadable or not PEM.
        """
        if self.grpc_tls_cert_file is None or self.grpc_tls_key_file is None:
            return None
        return ServerTLS.from_files(
            self.grpc_tls_cert_file,
            self.grpc_tls_key_file,
            self.grpc_tls_client_ca_file,
            names=(
                "grpc_tls_cert_file (ACT_<SERVICE>_GRPC_TLS_CERT_FILE)",
                "grpc_tls_key_file (ACT_<SERVICE>_GRPC_TLS_KEY_FILE)",
                "grpc_tls_client_ca_file (ACT_<SERVICE>_GRPC_TLS_CLIENT_CA_FILE)",
            ),
        )


class StageSettings(ServiceSettings):
    """Knobs of the exactly-once consume-transform-produce loop."""

    group_id: str = Field("", description="Consumer group; defaults to act-<stage>.")
    max_in_flight: int = Field(256, ge=1, description="Handlers running at once.")
    max_buffered: int = Field(
        4096, ge=1, description="Completed but uncommitted messages held before fetching pauses."
    )
    commit_interval_ms: int = Field(100, ge=1, description="Longest wait before a commit.")
    commit_max_records: int = Field(2000, ge=1, description="Commit early past this many.")
    fetch_max_records: int = Field(1000, ge=1)
    max_attempts: int = Field(4, ge=1, description="Handler attempts before dead-lettering.")
    backoff_initial_ms: int = Field(200, ge=0)
    backoff_max_ms: int = Field(10_000, ge=0)
    handler_timeout_s: float = Field(120.0, gt=0, description="Per attempt.")
    drain_timeout_s: float = Field(20.0, ge=0, description="SIGTERM: finish in-flight work.")
    session_timeout_ms: int = Field(10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    transaction_timeout_ms: int = Field(60_000, ge=1_000)
    status_heartbeat_s: float = Field(
        5.0,
        ge=0,
        description=(
            "Seconds between the replica's heartbeats on act.stage.heartbeats (in-flight and "
            "retries for GetStatus); 0 = none."
        ),
    )
    recovery_attempts: int = Field(
        30, ge=1, description="Failed commit recoveries in a row before the process exits."
    )
