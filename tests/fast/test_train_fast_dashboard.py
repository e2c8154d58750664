"""train_fast's TensorBoard and HParams keep the one dashboard convention (tests/helpers.check_dashboard);
train_adain's: tests/fast/test_adain_tasks.py."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from helpers import check_dashboard, dashboard, hparams_columns, tile_mean
from transferlab.fast.per_style.module import preview


def test_dashboard_opens_on_the_losses_with_validation_at_its_steps(trained: Path) -> None:
    """4 steps, validation every 2: train/ and val/ first, the stylized photos under visuals/; each
    validation's scalars and images at the step it validated (2 and 4, not Lightning's 1 and 3), the
    HParams session's (the final validation's) on the same point."""
    check_dashboard(trained, ["train", "val"])
    events = dashboard(trained)
    assert [s.step for s in events.Scalars("val/loss")] == [2, 4]
    assert [s.step for s in events.Images("visuals/stylized")] == [2, 4]
    assert [s.step for s in events.Scalars("train/loss")] == [0, 1, 2, 3]  # each batch at the step it starts
    (final,) = dashboard(trained, session=True).Scalars("val/loss")
    assert final.step == 4 and abs(final.value - events.Scalars("val/loss")[-1].value) < 1e-6


def test_hparams_show_the_settings_that_matter_and_random_weights(trained: Path) -> None:
    hp = OmegaConf.load(trained / "tensorboard" / "hparams" / "hparams.yaml")
    assert hp["model.weights"] == "random"
    assert json.loads((trained / "metrics.json").read_text())["weights"] == "random"  # as stylize's
    assert hp["layers.style"] == "relu1_2:1.0,relu2_2:1.0,relu3_3:1.0,relu4_3:1.0"
    assert {"task.steps", "task.lr", "loss.style_weight", "fastnet.arch", "seed"} <= set(hp)
    assert len(hparams_columns(trained)) <= 20


def test_stylized_photos_show_under_their_photos_in_a_grid(trained: Path) -> None:
    """The 2 validation photos of 32 px side by side above their stylizations (2 px padding), not a strip."""
    image = dashboard(trained).Images("visuals/stylized")[-1]
    assert (image.width, image.height) == (2 * 34 + 2, 2 * 34 + 2)


def test_preview_has_four_photos_a_row_each_above_its_stylization() -> None:
    """8 photos (the default data.val_count): 4 x 4 tiles of 256 px; 5 photos: the last row padded white."""
    photos, stylized = torch.zeros(8, 3, 300, 300), torch.full((8, 3, 300, 300), 0.5)
    grid = preview(photos, stylized)
    assert grid.shape == (3, 4 * 258 + 2, 4 * 258 + 2)
    assert [tile_mean(grid, row, col, 256) for row in range(4) for col in (0, 3)] == [0, 0, 0.5, 0.5, 0, 0, 0.5, 0.5]
    grid = preview(photos[:5], stylized[:5])
    assert grid.shape == (3, 4 * 258 + 2, 4 * 258 + 2)
    assert [tile_mean(grid, r, c, 256) for r in (2, 3) for c in (0, 1)] == [
        0,
        1,
        0.5,
        1,
    ]  # the last row's empty places white
