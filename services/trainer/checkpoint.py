"""Checkpoints: model, optimizer, epoch and RNG state, written atomically.

A checkpoint is one ``torch.save`` file. It is written to a temporary file in
the same directory, flushed and fsynced, then renamed over the final name
(``os.replace`` is atomic on POSIX), and the directory is fsynced so the
rename survives a power cut. A reader therefore sees either the previous
complete checkpoint or the new complete one, never a torn file, even when the
process is SIGKILLed mid-write.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from services.trainer.fit import EpochReport, TrainState

FORMAT = "act-trainer-checkpoint/1"


@dataclass(frozen=True, slots=True)
class WrittenCheckpoint:
    """Where a checkpoint went and its content hash."""

    path: Path
    sha256: str
    epoch: int


def rng_state() -> dict[str, Any]:
    """Every RNG a fit touches: torch (CPU and CUDA), numpy and Python's ``random``.

    Encoded as tensors and plain numbers only, so the checkpoint loads with
    ``torch.load(weights_only=True)``.
    """
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_gauss": float(gauss),
        "python_version": int(version),
        "python_internal": torch.tensor(internal, dtype=torch.int64),
        "python_gauss_next": gauss_next,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    random.setstate(
        (
            state["python_version"],
            tuple(int(v) for v in state["python_internal"].tolist()),
            state["python_gauss_next"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(
    path: Path, state: TrainState, *, extra: dict[str, Any] | None = None
) -> WrittenCheckpoint:
    """Atomically write model, optimizer, epoch, history and RNG state to ``path``."""
    payload = {
        "format": FORMAT,
        "epoch": state.epoch,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "history": [
            {
                "epoch": r.epoch,
                "train_loss": r.train_loss,
                "seconds": r.seconds,
                "metrics": dict(r.metrics),
            }
            for r in state.history
        ],
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return WrittenCheckpoint(path=path, sha256=hashlib.sha256(data).hexdigest(), epoch=state.epoch)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    restore_rng: bool = True,
) -> tuple[TrainState, dict[str, Any]]:
    """Load a checkpoint into ``model`` and ``optimizer``; returns the state and ``extra``.

    ``weights_only=True``: a checkpoint is data, never code to execute.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path} is not an ACT trainer checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ACT trainer checkpoint")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if restore_rng:
        set_rng_state(payload["rng"])
    history = [
        EpochReport(
            epoch=int(r["epoch"]),
            train_loss=float(r["train_loss"]),
            seconds=float(r["seconds"]),
            metrics=dict(r["metrics"]),
        )
        for r in payload["history"]
    ]
    state = TrainState(
        model=model, optimizer=optimizer, epoch=int(payload["epoch"]), history=history
    )
    return state, dict(payload.get("extra") or {})
