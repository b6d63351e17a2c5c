"""Settings of the batch driver, read from ``ACT_BATCH_*``.

Composed like the model stages' settings (:mod:`services.backends.settings`):
the ``service`` part (ports, logs, gRPC TLS: ``ACT_BATCH_GRPC_PORT``...) and
the ``llm`` part (``ACT_BATCH_PROVIDER`` openai|anthropic, ``_MODEL``,
``_BASE_URL``, ``_API_KEY`` as a secret, ``_PRICE_INPUT_PER_MTOK``...) share
the one prefix, plus the batch knobs below.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.backends.settings import ComposedSettings
from services.llm.settings import LLMOptions
from services.runtime.config import ServiceSettings

ENV_PREFIX = "ACT_BATCH_"


class BatchSettings(ComposedSettings):
    """The driver's parts (``service``, ``llm``) and its batch knobs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    service: ServiceSettings
    llm: LLMOptions

    stage_kind: Literal["annotator"] = Field(
        "annotator", description="Whose requests the driver batches (items -> annotations)."
    )
    default_strategy: Literal["naive", "cot"] = Field(
        "cot", description="Strategy for tasks that leave annotation_strategy unspecified."
    )
    group_id: str = Field(
        "",
        description="Consumer group of the driver (offsets of items and retries) and the "
        "base of its one transactional id; default act-batch-<stage_kind>.",
    )
    max_requests: int = Field(
        1000,
        ge=1,
        le=50_000,
        description="Requests per batch. The batch's state record holds its items, so this "
        "times the item size must stay under the state topic's 16 MiB record limit.",
    )
    max_wait_s: float = Field(
        60.0, gt=0, description="Submit a smaller batch once its oldest request waited this long."
    )
    poll_s: float = Field(30.0, gt=0, description="Seconds between status checks of a batch.")
    max_attempts: int = Field(
        3, ge=1, description="Attempts per request (failed, expired, unparseable) before the DLQ."
    )
    discount: float = Field(
        0.5, ge=0, le=1, description="Batch price as a share of the synchronous price."
    )
    submit_backoff_s: float = Field(
        5.0, gt=0, description="Wait after a failed submission or lookup before the next try."
    )
    anthropic_skew_s: float = Field(
        2.0,
        ge=0,
        description="Anthropic batches carry no metadata: a restart adopts an unclaimed batch "
        "of the same size created at most this long before ours was formed (clock skew).",
    )
    max_record_bytes: int = Field(
        16 * 1024 * 1024, ge=1024 * 1024, description="Largest state record the producer sends."
    )
