"""The run's TensorBoard logger: every scalar of a step written, by step, without Lightning's epoch chart."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from transferlab.trainer import RunLogger


def test_scalars_of_a_step_are_written_at_that_step_without_the_epoch(tmp_path) -> None:
    logger = RunLogger(save_dir=str(tmp_path), name="tensorboard", version="", default_hp_metric=False)
    logger.log_metrics({"loss/total": 0.5, "style/loss_relu1_1": torch.tensor(0.25), "epoch": 0}, step=3)
    logger.log_metrics({"loss/total": 0.125}, step=4)
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert sorted(events.Tags()["scalars"]) == ["loss/total", "style/loss_relu1_1"]
    assert [(e.step, e.value) for e in events.Scalars("loss/total")] == [(3, 0.5), (4, 0.125)]
    assert [(e.step, e.value) for e in events.Scalars("style/loss_relu1_1")] == [(3, pytest.approx(0.25))]
