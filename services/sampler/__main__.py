"""``python -m services.sampler``: run the sampler stage (settings from ``ACT_SAMPLER_*``)."""

from __future__ import annotations

from services.runtime.app import run_stage_main
from services.runtime.config import KafkaSettings
from services.runtime.stage import Hook
from services.runtime.tasks import TaskRegistry
from services.sampler.second_critic import SecondCritic, model_book
from services.sampler.service import SamplerSettings, SamplerStage


def build_stage(settings: SamplerSettings, kafka: KafkaSettings) -> SamplerStage:
    """The stage these settings describe: tasks from ``act.tasks`` (unless the
    settings define them) and the second critic from ``act.models`` (unless off)."""
    on_start: list[Hook] = []
    on_stop: list[Hook] = []
    registry = None
    if settings.task_source == "topic":
        registry = TaskRegistry(kafka)
        on_start.append(registry.start)
        on_stop.append(registry.stop)
    second = None
    if settings.second_critic == "auto":
        book = model_book(kafka)
        second = SecondCritic(book)
        on_start.append(book.start)
        on_stop.insert(0, book.stop)
    return SamplerStage(
        settings, tasks=registry, second_critic=second, on_start=on_start, on_stop=on_stop
    )


def main() -> None:
    """Build the stage from the environment and run it until SIGTERM."""
    settings = SamplerSettings()
    kafka = KafkaSettings()
    run_stage_main(build_stage(settings, kafka), kafka, settings)


if __name__ == "__main__":
    main()
