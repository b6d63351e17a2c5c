"""``python -m services.sampler``: run the sampler stage (settings from ``ACT_SAMPLER_*``)."""

from __future__ import annotations

from services.runtime.app import run_stage_main
from services.runtime.config import KafkaSettings
from services.runtime.tasks import TaskRegistry
from services.sampler.service import SamplerSettings, SamplerStage


def build_stage(settings: SamplerSettings, kafka: KafkaSettings) -> SamplerStage:
    """The stage these settings describe."""
    if settings.task_source == "settings":
        return SamplerStage(settings)
    registry = TaskRegistry(kafka)
    return SamplerStage(
        settings, tasks=registry, on_start=[registry.start], on_stop=[registry.stop]
    )


def main() -> None:
    """Build the stage from the environment and run it until SIGTERM."""
    settings = SamplerSettings()
    kafka = KafkaSettings()
    run_stage_main(build_stage(settings, kafka), kafka, settings)


if __name__ == "__main__":
    main()
