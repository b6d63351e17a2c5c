"""The trainer stage: dedupe by item id, automatic fits, permanent errors (no Kafka)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from act.v1 import training_pb2

from services.trainer.events import MemorySink
from services.trainer.factory import build_trainer
from services.trainer.store import TrainerStore
from tests.support.harness import StageHarness
from tests.trainer.support import TASK, make_label, trainer_settings


async def test_stage_dedupes_and_starts_a_fit_after_enough_new_labels(tmp_path: Path) -> None:
    settings = trainer_settings(tmp_path, min_new_labels=40, epochs=1, power_lambda_grid=[])
    sink = MemorySink()
    trainer = build_trainer(settings, sink=sink)
    stage = trainer.stage
    harness = StageHarness(stage)
    await stage.start()
    try:
        for i in list(range(39)) + list(range(10)):  # 10 duplicates
            await harness.process(make_label(i), offset=i)
        assert trainer.store.count_labels(TASK) == 39
        assert trainer.store.list_fits(TASK) == []
        await harness.process(make_label(39), offset=99)
        fits = trainer.store.list_fits(TASK)
        assert len(fits) == 1
        assert await asyncio.to_thread(trainer.fits.wait_idle, 120)
        # No second fit until 40 more new labels arrive.
        await harness.process(make_label(5), offset=100)
        assert len(trainer.store.list_fits(TASK)) == 1
        from services.runtime.retry import PermanentError

        broken = make_label(3)  # delta = 1
        broken.ClearField("human_label")
        with pytest.raises(PermanentError):
            await harness.process(broken, offset=101)
    finally:
        await stage.stop()
    status = TrainerStore(settings.store_path).get_fit(fits[0].fit_id)
    assert status is not None
    assert status.state == training_pb2.FIT_STATE_SUCCEEDED, status.error
