"""``python -m services.trainer``: run the trainer stage (settings from ``ACT_TRAINER_*``)."""

from __future__ import annotations

from services.runtime.app import run_stage_main
from services.runtime.config import KafkaSettings
from services.trainer.api import registrations
from services.trainer.factory import build_trainer
from services.trainer.settings import TrainerSettings


def main() -> None:
    """Build the trainer from the environment and run it until SIGTERM."""
    settings = TrainerSettings()
    kafka = KafkaSettings()
    trainer = build_trainer(settings, kafka)
    run_stage_main(trainer.stage, kafka, settings, registrations(trainer.facade))


if __name__ == "__main__":
    main()
