"""Settings of the pipeline-status service (environment prefix ``ACT_STATUS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.config import ServiceSettings


class PipelineStatusSettings(ServiceSettings):
    """What the PipelineStatusService reads from its environment.

    The Kafka connection comes from :class:`~services.runtime.config.KafkaSettings`
    (``ACT_KAFKA_``). The review database is optional: without it, GetStatus
    leaves ``review_queue_depth`` unset and says so (``review_queue_known``).
    """

    model_config = SettingsConfigDict(env_prefix="ACT_STATUS_", extra="ignore")

    group_prefix: str = Field(
        "", description="Prefix of the stages' consumer groups (act-<stage> by default)."
    )
    review_database_url: str = Field(
        "",
        description=(
            "The review gateway's database (as ACT_GATEWAY_DATABASE_URL), read only for the "
            "review queue depth; empty = no queue depth."
        ),
    )
    review_database_schema: str = Field(
        "",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$",
        description="PostgreSQL schema of the gateway's tables (as ACT_GATEWAY_DATABASE_SCHEMA).",
    )
    sync_timeout_s: float = Field(
        5.0,
        ge=0,
        description=(
            "How long GetStatus waits for the task counters to include every record committed "
            "when the call began (tasks_caught_up = false after that)."
        ),
    )
