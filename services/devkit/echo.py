"""A stage built on the runtime for the runtime's own tests and benchmarks.

``EchoStage`` turns each Item into an Annotation that embeds it (label = a hash
of the item id), optionally sleeping and failing on purpose. Run it as a
process with ``python -m services.devkit.echo`` (settings from the usual
``ACT_KAFKA_*`` and ``ACT_ECHO_*`` variables) so tests can SIGKILL it.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Sequence

from act.v1 import annotation_pb2, item_pb2
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.app import run_stage_main
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Output, Stage


class EchoSettings(StageSettings):
    """Settings of the echo stage (env prefix ``ACT_ECHO_``)."""

    model_config = SettingsConfigDict(env_prefix="ACT_ECHO_", extra="ignore")

    delay_ms: float = Field(0.0, ge=0, description="Mean handler sleep (exponential).")
    fail_prefix: str = Field("", description="Items whose id starts so always raise.")
    permanent_prefix: str = Field("", description="Items whose id starts so fail permanently.")


class EchoStage(Stage[item_pb2.Item]):
    """Item -> Annotation (test stage)."""

    name = "echo"
    input_topic = "items"
    input_type = item_pb2.Item

    def __init__(
        self, delay_ms: float = 0.0, fail_prefix: str = "", permanent_prefix: str = ""
    ) -> None:
        self.delay_ms = delay_ms
        self.fail_prefix = fail_prefix
        self.permanent_prefix = permanent_prefix

    async def process(self, envelope: Envelope[item_pb2.Item]) -> Sequence[Output]:
        item = envelope.message
        if self.delay_ms:
            await asyncio.sleep(random.expovariate(1000.0 / self.delay_ms))
        if self.fail_prefix and item.item_id.startswith(self.fail_prefix):
            raise RuntimeError("echo stage: injected failure")
        if self.permanent_prefix and item.item_id.startswith(self.permanent_prefix):
            raise PermanentError("echo stage: injected permanent failure")
        return echo(item, envelope.attempt)


class SleepStage(EchoStage):
    """Echo after a fixed sleep (for the concurrency benchmark)."""

    name = "sleep"

    async def process(self, envelope: Envelope[item_pb2.Item]) -> Sequence[Output]:
        await asyncio.sleep(self.delay_ms / 1000)
        return echo(envelope.message, envelope.attempt)


def echo(item: item_pb2.Item, attempt: int) -> list[Output]:
    """The annotation the echo stages produce for an item."""
    annotation = annotation_pb2.Annotation(
        annotation_id=f"{item.item_id}:echo",
        label_index=zlib.crc32(item.item_id.encode()) % 10,
        attempts=attempt,
    )
    annotation.item.CopyFrom(item)
    return [Output(topic="annotations", key=item.item_id, value=annotation)]


def main() -> None:
    """Run the echo stage as a process."""
    settings = EchoSettings()
    stage = EchoStage(settings.delay_ms, settings.fail_prefix, settings.permanent_prefix)
    run_stage_main(stage, KafkaSettings(), settings)


if __name__ == "__main__":
    main()
