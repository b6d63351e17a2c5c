"""A fit's files: ``<checkpoint_dir>/<fit_id>/{checkpoint.pt,metrics.json,model.pt}``.

``checkpoint.pt`` is the resumable state (:mod:`services.trainer.checkpoint`),
``metrics.json`` the fit's metrics and per-epoch history, ``model.pt`` the
final model with its name, config and metrics. Every file is written
atomically, so a reader (or a restarted process) never sees a torn one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from act.v1 import training_pb2

from services.trainer.checkpoint import (
    WrittenCheckpoint,
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
)
from services.trainer.fit import TrainConfig, TrainState, make_optimizer


class FitFiles:
    """Reads and writes the files of fits under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def fit_dir(self, fit_id: str) -> Path:
        """Where a fit's checkpoint, metrics and final model live."""
        return self.root / fit_id

    def checkpoint_path(self, fit_id: str) -> Path:
        """The fit's resumable checkpoint."""
        return self.fit_dir(fit_id) / "checkpoint.pt"

    def load_checkpoint(
        self, fit_id: str, model: torch.nn.Module, config: TrainConfig
    ) -> tuple[TrainState, dict[str, Any]] | None:
        """The fit's last checkpoint loaded into ``model`` (moved to the config's device)
        and a new optimizer, with the checkpoint's ``extra``; None when there is none."""
        path = self.checkpoint_path(fit_id)
        if not path.exists():
            return None
        model.to(config.device)
        return load_checkpoint(path, model, make_optimizer(model, config))

    def save_checkpoint(
        self, fit_id: str, state: TrainState, extra: dict[str, Any]
    ) -> WrittenCheckpoint:
        """Atomically replace the fit's checkpoint."""
        return save_checkpoint(self.checkpoint_path(fit_id), state, extra=extra)

    def write_metrics(self, status: training_pb2.FitStatus, state: TrainState) -> None:
        """Write ``metrics.json``: the status' metrics and the per-epoch history."""
        doc = {
            "fit_id": status.fit_id,
            "task_id": status.task_id,
            "epoch": state.epoch,
            "metrics": dict(status.metrics),
            "history": [
                {
                    "epoch": r.epoch,
                    "train_loss": r.train_loss,
                    "seconds": r.seconds,
                    "metrics": r.metrics,
                }
                for r in state.history
            ],
        }
        atomic_write_bytes(
            self.fit_dir(status.fit_id) / "metrics.json", json.dumps(doc, indent=2).encode()
        )

    def write_final(self, status: training_pb2.FitStatus, state: TrainState) -> Path:
        """Write the final ``model.pt`` (weights, model name, config, metrics) and the metrics."""
        path = self.fit_dir(status.fit_id) / "model.pt"
        buffer = io.BytesIO()
        torch.save(
            {
                "model": state.model.state_dict(),
                "model_name": status.config.model,
                "config": status.config.SerializeToString(),
                "metrics": dict(status.metrics),
            },
            buffer,
        )
        atomic_write_bytes(path, buffer.getvalue())
        self.write_metrics(status, state)
        return path
