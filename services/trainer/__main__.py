"""``python -m services.trainer``: run the trainer stage (settings from ``ACT_TRAINER_*``)."""

from __future__ import annotations

from services.runtime.app import run_stage_main
from services.runtime.config import KafkaSettings
from services.runtime.tasks import TaskRegistry
from services.trainer.service import TrainerSettings, TrainerStage, registrations


def main() -> None:
    """Build the stage from the environment and run it until SIGTERM."""
    settings = TrainerSettings()
    kafka = KafkaSettings()
    tasks = TaskRegistry(kafka) if settings.use_task_registry else None
    stage = TrainerStage(settings, kafka, tasks=tasks)
    run_stage_main(stage, kafka, settings, registrations(stage))


if __name__ == "__main__":
    main()
