"""Helpers of the trainer tests: synthetic final labels with real PNG images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from act.v1 import item_pb2, review_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.datasets.png import encode_gray_png
from services.trainer.settings import TrainerSettings

TASK = "task-fashion-test"


def blob_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 image whose bright square's position encodes the class (learnable)."""
    img = (rng.random((28, 28)) * 60).astype(np.uint8)
    row, col = divmod(label, 4)
    img[2 + 6 * row : 8 + 6 * row, 2 + 6 * col : 8 + 6 * col] = 230
    return img


def make_label(
    n: int,
    *,
    task_id: str = TASK,
    classes: int = 4,
    seed: int = 0,
    review_every: int = 3,
) -> review_pb2.FinalLabel:
    """FinalLabel number ``n``: human label = n % classes; machine wrong on every 5th item;
    every ``review_every``-th item reviewed (delta = 1, pi = 0.5), the rest pi = 0.1."""
    rng = np.random.default_rng(seed * 100_003 + n)
    human = n % classes
    machine = (human + 1) % classes if n % 5 == 0 else human
    delta = n % review_every == 0
    item = item_pb2.Item(
        item_id=f"item-{n:05d}",
        task_id=task_id,
        image_bytes=encode_gray_png(blob_image(human, rng)),
        image_mime_type="image/png",
    )
    ts = Timestamp()
    ts.GetCurrentTime()
    label = review_pb2.FinalLabel(
        item_id=item.item_id,
        task_id=task_id,
        label_index=human if delta else machine,
        machine_label=machine,
        delta=delta,
        pi=0.5 if delta else 0.1,
        eps=0.8 if machine != human else 0.1,
        finalized_at=ts,
    )
    if delta:
        label.human_label = human
    label.item.CopyFrom(item)
    return label


def trainer_settings(tmp: Path, **kw: Any) -> TrainerSettings:
    """Settings of a trainer under ``tmp``: no ports, no task registry, one torch thread."""
    return TrainerSettings(
        store_path=tmp / "store.sqlite",
        checkpoint_dir=tmp / "ckpt",
        metrics_port=0,
        grpc_port=0,
        use_task_registry=False,
        torch_threads=1,
        **kw,
    )
