"""Settings of the batch driver, read from ``ACT_BATCH_*``.

Composed like the model stages' settings (:mod:`services.backends.settings`):
the ``service`` part (ports, logs, gRPC TLS: ``ACT_BATCH_GRPC_PORT``...) and
the ``llm`` part (``ACT_BATCH_PROVIDER`` openai|anthropic, ``_MODEL``,
``_BASE_URL``, ``_API_KEY`` as a secret, ``_PRICE_INPUT_PER_MTOK``...) share
the one prefix, plus the batch knobs below. ``ACT_BATCH_STAGE_KIND`` chooses
the stage (:mod:`services.batchapi.kinds`): ``annotator`` (default) or
``criticizer``; any other value is refused at start with the known ones.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.backends.settings import ComposedSettings
from services.batchapi.kinds import KINDS
from services.llm.settings import LLMOptions
from services.runtime.config import ServiceSettings

ENV_PREFIX = "ACT_BATCH_"


class BatchSettings(ComposedSettings):
    """The driver's parts (``service``, ``llm``) and its batch knobs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    service: ServiceSettings
    llm: LLMOptions

    stage_kind: Literal["annotator", "criticizer"] = Field(
        "annotator",
        description="Whose requests the driver batches: annotator (items -> annotations) or "
        "criticizer (annotations -> critiques, verbalized strategies only).",
    )
    default_strategy: Literal["naive", "cot", "multiple-choice", "devils-advocate"] = Field(
        "cot",
        description="Strategy for tasks that leave theirs unspecified (annotation_strategy "
        "or critique_strategy); the annotator knows naive and cot only.",
    )
    group_id: str = Field(
        "",
        description="Consumer group of the driver (offsets of its inputs and retries) and the "
        "base of its one transactional id; default act-batch-<stage_kind>. Drivers of "
        "different kinds need different groups.",
    )
    max_requests: int = Field(
        1000,
        ge=1,
        le=50_000,
        description="Requests per batch. The batch's state record holds its inputs (items or "
        "annotations), so this times their size must stay under the state topic's 16 MiB "
        "record limit.",
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

    @model_validator(mode="after")
    def _strategy_of_the_kind(self) -> BatchSettings:
        """Refuse, at start, a default strategy the chosen kind cannot batch."""
        known = KINDS[self.stage_kind].strategies
        if self.default_strategy not in known:
            raise ValueError(
                f"ACT_BATCH_DEFAULT_STRATEGY={self.default_strategy!r} is not a batch strategy "
                f"of the {self.stage_kind} (choose one of {', '.join(known)})"
            )
        return self
