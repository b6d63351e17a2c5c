"""Trainer settings (environment prefix ``ACT_TRAINER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.config import StageSettings
from services.trainer.hpo import PAPER_LAMBDA_GRID


class TrainerSettings(StageSettings):
    """Trainer settings (env prefix ``ACT_TRAINER_``)."""

    model_config = SettingsConfigDict(env_prefix="ACT_TRAINER_", extra="ignore")

    checkpoint_dir: Path = Field(
        Path(".local/trainer/checkpoints"), description="Checkpoints, metrics, final models."
    )
    store_path: Path = Field(
        Path(".local/trainer/store.sqlite"), description="SQLite file of labels and fits."
    )
    min_new_labels: int = Field(
        0, ge=0, description="Start a fit after this many new labels of a task; 0 = never."
    )
    model: str = Field(
        "",
        description="Default downstream model; empty = by task modality (cnn-28x28, minilm-head).",
    )
    device: str = Field("cpu", description="torch device of fits.")
    epochs: int = Field(0, ge=0, description="Default epochs; 0 = the model's default.")
    batch_size: int = Field(0, ge=0, description="Default batch size; 0 = the model's default.")
    learning_rate: float = Field(0.0, ge=0.0, description="Default lr; 0 = the model's default.")
    power_lambda_grid: list[float] = Field(
        default_factory=lambda: list(PAPER_LAMBDA_GRID),
        description="lambda grid of automatic fits (appendix A.3); [] = lambda 1.",
    )
    validation_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Items held out (by id hash) for validation."
    )
    checkpoint_every: int = Field(1, ge=1, description="Write a checkpoint every this many epochs.")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = default.")
    event_timeout_s: float = Field(10.0, gt=0.0, description="Wait for a training event's ack.")
    use_task_registry: bool = Field(
        True, description="Read act.tasks for class counts and modality."
    )
    publish_models: bool = Field(
        True,
        description=(
            "Publish every succeeded fit's model on act.models, with its fusion with the "
            "critic fitted on validation reviews: the sampler's second critic."
        ),
    )
