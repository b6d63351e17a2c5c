"""Settings shared by every service.

Each service has one settings class with its own environment prefix (for
example ``ACT_ANNOTATOR_``) that extends :class:`StageSettings`; the Kafka
connection is shared by all services and read from ``ACT_KAFKA_``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    """Settings every service has: logging, metrics and the gRPC port."""

    model_config = SettingsConfigDict(env_prefix="ACT_", extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    metrics_port: int = Field(9464, ge=0, le=65535, description="0 disables /metrics.")
    grpc_port: int = Field(
        50051, ge=0, le=65535, description="gRPC (health and service API); 0 = any free port."
    )
    grpc_reflection: bool = Field(False, description="Enable server reflection (not in prod).")
    environment: Literal["dev", "test", "production"] = "dev"


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
    recovery_attempts: int = Field(
        30, ge=1, description="Failed commit recoveries in a row before the process exits."
    )
