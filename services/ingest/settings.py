"""Settings of the ingest service (environment prefix ``ACT_INGEST_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.runtime.config import ServiceSettings

MIB = 1024 * 1024


class IngestLimits(ServiceSettings):
    """What one item may carry; the pure validation reads only these."""

    max_text_bytes: int = Field(
        64 * 1024, ge=1, description="Largest Item.text (and Item.question), in UTF-8 bytes."
    )
    max_inline_image_bytes: int = Field(
        900_000,
        ge=1,
        description=(
            "Largest inline image (Item.image_bytes); larger ones need the claim-check "
            "store (Item.image_uri). Kafka's default record limit is about 1 MB."
        ),
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Pixel budget (width x height) of an inline image, checked before decoding.",
    )
    max_metadata_entries: int = Field(64, ge=0, description="Entries of Item.metadata.")
    max_metadata_bytes: int = Field(
        8 * 1024, ge=0, description="Keys and values of Item.metadata together, in UTF-8 bytes."
    )
    max_uri_chars: int = Field(2048, ge=1, description="Longest Item.image_uri.")
    claim_store_url: str = Field(
        "",
        description=(
            "Claim-check store for images over max_inline_image_bytes: a directory "
            "(/path or file:///path, shared with the stages) or s3://bucket/prefix "
            "(?endpoint_url=...&region=... for S3-compatible stores; credentials from the "
            "AWS chain). Empty = such images are refused. The stages read it from "
            "ACT_<STAGE>_CLAIM_STORE_URL."
        ),
    )
    max_claim_image_bytes: int = Field(
        16 * MIB, ge=1, description="Largest image accepted for the claim-check store."
    )
    allow_reference_labels: bool = Field(
        False,
        description=(
            "Accept Item.reference_label (evaluation runs only). Task has no evaluation "
            "flag, so the deployment decides; off, such items are refused."
        ),
    )


class IngestSettings(IngestLimits):
    """Everything the ingest service reads from its environment.

    The Kafka connection comes from :class:`~services.runtime.config.KafkaSettings`
    (``ACT_KAFKA_``). Tokens are the review gateway's: the service reads the
    gateway's ``reviewers`` table in ``database_url``, where it also keeps its
    own ledger table of accepted item ids (``ingest_ledger``).
    """

    model_config = SettingsConfigDict(env_prefix="ACT_INGEST_", extra="ignore")

    grpc_port: int = Field(
        50052,
        ge=0,
        le=65535,
        description="gRPC (ingest, pipeline status, health); 0 = any free port.",
    )
    metrics_port: int = Field(9465, ge=0, le=65535, description="0 disables /metrics.")
    data_dir: Path = Field(
        Path("data/review-gateway"),
        description="Where the embedded SQLite database lives when database_url is empty "
        "(the gateway's default, so both processes share it in local development).",
    )
    database_url: str = Field(
        "",
        description=(
            "The review gateway's database (tokens) and the ledger's: postgresql://..., "
            "sqlite:///path. Empty = the gateway's SQLite file under data_dir."
        ),
    )
    database_schema: str = Field(
        "",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$",
        description="PostgreSQL schema (search_path); the gateway's, empty = default.",
    )
    database_pool_size: int = Field(5, ge=1, le=100, description="PostgreSQL connections.")
    admin_token: SecretStr | None = Field(
        None,
        description="Bootstrap admin bearer token (may ingest); compared by SHA-256, never logged.",
    )
    token_cache_s: float = Field(
        2.0, ge=0, description="How long a verified token is trusted without a database read."
    )
    max_in_flight: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Items of one stream sent to Kafka and not yet acknowledged (flow control).",
    )
    max_in_flight_bytes: int = Field(
        8 * MIB,
        ge=1024,
        description="Serialized bytes of one stream's items held before they are sent "
        "(flow control; with max_streams, what bounds memory).",
    )
    max_streams: int = Field(
        32,
        ge=1,
        description="Ingest calls served at once (memory: one chunk each); more get "
        "RESOURCE_EXHAUSTED.",
    )
    max_request_bytes: int = Field(
        0,
        ge=0,
        description="grpc.max_receive_message_length: one streamed item; larger = "
        "RESOURCE_EXHAUSTED for the whole call. 0 = 1 MiB, or max_claim_image_bytes "
        "+ 1 MiB with a claim-check store.",
    )
    max_errors_reported: int = Field(
        100, ge=0, description="IngestSummary.errors keeps the first this many refusals."
    )
    task_wait_s: float = Field(
        1.0,
        ge=0,
        description="How long a lookup waits for a task not yet read from act.tasks.",
    )
    list_page_size: int = Field(100, ge=1, le=1000, description="ListTasks default page size.")

    def resolved_max_request_bytes(self) -> int:
        """The gRPC message limit: room for the largest image the service accepts."""
        if self.max_request_bytes:
            return self.max_request_bytes
        return self.max_claim_image_bytes + MIB if self.claim_store_url else MIB

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the gateway's SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'review-gateway.db').as_posix()}"
