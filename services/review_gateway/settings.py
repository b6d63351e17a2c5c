"""Settings of the review gateway (environment prefix ``ACT_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.config import StageSettings

MIB = 1024 * 1024


class GatewaySettings(StageSettings):
    """Everything the review gateway reads from its environment.

    The Kafka connection comes from :class:`~services.runtime.config.KafkaSettings`
    (``ACT_KAFKA_``); the consume loop's knobs are inherited from
    :class:`~services.runtime.config.StageSettings` but read with this class's
    prefix (``ACT_GATEWAY_MAX_IN_FLIGHT`` and so on).
    """

    model_config = SettingsConfigDict(env_prefix="ACT_GATEWAY_", extra="ignore")

    data_dir: Path = Field(
        Path("data/review-gateway"),
        description="Where the embedded SQLite database lives when database_url is empty.",
    )
    database_url: str = Field(
        "",
        description=(
            "SQLAlchemy URL or libpq DSN: postgresql://..., postgresql+psycopg://..., "
            "sqlite:///path, sqlite+aiosqlite:///path. Empty = SQLite under data_dir."
        ),
    )
    database_schema: str = Field(
        "",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$",
        description="PostgreSQL schema (search_path) of the gateway's tables; empty = default.",
    )
    database_pool_size: int = Field(
        10,
        ge=1,
        le=200,
        description=(
            "PostgreSQL connections per pool: SQLAlchemy (plus as many overflow) and the "
            "lease/submit fast path; a replica holds at most three times this many."
        ),
    )
    migrate_on_start: bool = Field(True, description="Run Alembic migrations to head at start.")
    admin_token: SecretStr | None = Field(
        None,
        description=(
            "Bootstrap admin bearer token (ACT_GATEWAY_ADMIN_TOKEN). Creates reviewers; "
            "compared by SHA-256, never logged."
        ),
    )
    lease_seconds: int = Field(300, ge=1, description="Default lease duration.")
    max_lease_seconds: int = Field(3600, ge=1, description="Cap on requested lease durations.")
    max_wait_seconds: float = Field(30.0, ge=0, description="Cap on a Lease call's long poll.")
    max_request_bytes: int = Field(
        1 * MIB,
        ge=1024,
        description="grpc.max_receive_message_length: larger calls get RESOURCE_EXHAUSTED.",
    )
    max_response_bytes: int = Field(8 * MIB, ge=1024, description="grpc.max_send_message_length.")
    require_deadline: bool = Field(
        True,
        description="Reject ReviewService calls that carry no gRPC deadline (INVALID_ARGUMENT).",
    )
    call_timeout_s: float = Field(
        15.0, gt=0, description="Server-side ceiling on one call (besides the client's deadline)."
    )
    outbox_poll_interval_s: float = Field(0.2, gt=0, description="Idle wait of the outbox relay.")
    outbox_batch_size: int = Field(500, ge=1, le=10_000, description="Rows per Kafka transaction.")
    reaper_interval_s: float = Field(
        1.0, gt=0, description="How often expired leases are reclaimed."
    )
    token_cache_s: float = Field(
        2.0, ge=0, description="How long a verified token is trusted without a database read."
    )
    expose_reference_labels: bool = Field(
        False,
        description=(
            "Keep Item.reference_label in Lease responses (replay reviewers in demos and "
            "benchmarks only; refused in production)."
        ),
    )
    tasks_topic_enabled: bool = Field(
        True, description="Follow act.tasks to learn label sets (the gateway needs them)."
    )

    http_enabled: bool = Field(
        True, description="Serve the reviewer web workspace (ACT_GATEWAY_HTTP_ENABLED)."
    )
    http_host: str = Field("0.0.0.0", description="Address the web workspace listens on.")  # noqa: S104
    http_port: int = Field(
        8090, ge=0, le=65535, description="Port of the web workspace (ACT_GATEWAY_HTTP_PORT)."
    )
    web_forwarded_allow_ips: str = Field(
        "",
        description=(
            "Peers whose X-Forwarded-For is trusted for the client address (login "
            "throttling): comma-separated IPs or CIDRs, '*' for any. Empty = none. Set it "
            "only where a NetworkPolicy lets nothing but the Ingress controller reach the port."
        ),
    )
    web_session_ttl_s: int = Field(
        8 * 3600, ge=60, le=7 * 24 * 3600, description="Lifetime of a web session."
    )
    web_cookie_secure: bool = Field(
        True,
        description=(
            "Mark cookies Secure (HTTPS only; browsers accept them on http://localhost too). "
            "Turn off only for plain-HTTP development on another host."
        ),
    )
    web_undo_window_s: int = Field(
        10,
        ge=0,
        le=300,
        description="How long a web submission can be undone (its FinalLabel waits as long).",
    )
    web_blur_px: int = Field(
        18,
        ge=2,
        le=60,
        description="Default image blur, in CSS pixels (images always start blurred).",
    )
    web_login_attempts_per_minute: int = Field(
        10, ge=1, description="Login attempts per client address and minute (per replica)."
    )
    web_break_after_s: int = Field(
        1200,
        ge=1,
        description="Default: prompt a break after this much revealed sensitive content (s).",
    )
    web_daily_cap_s: int = Field(
        7200,
        ge=1,
        description="Default daily cap of revealed seconds per reviewer and sensitive category.",
    )

    @model_validator(mode="after")
    def _check(self) -> GatewaySettings:
        if self.expose_reference_labels and self.environment == "production":
            raise ValueError("expose_reference_labels must stay off in production")
        if self.max_lease_seconds < self.lease_seconds:
            raise ValueError("max_lease_seconds must be >= lease_seconds")
        return self

    @property
    def reflection_enabled(self) -> bool:
        """Server reflection: on in dev or when asked, never in production."""
        if self.environment == "production":
            return False
        return self.grpc_reflection or self.environment == "dev"

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'review-gateway.db').as_posix()}"
