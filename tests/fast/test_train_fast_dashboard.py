"""train_fast's TensorBoard and HParams keep the one dashboard convention (tests/helpers.check_dashboard);
train_adain's: tests/fast/test_adain_tasks.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from omegaconf import OmegaConf

from helpers import check_dashboard, dashboard, hparams_columns, hparams_metrics, tile_mean
from transferlab.fast.per_style.module import previews


def test_dashboard_opens_on_the_losses_with_validation_at_its_steps(trained: Path) -> None:
    """4 steps, validation every 2: train/ and val/ first, the stylized photos under visuals/; each
    validation's scalars and images at the step it validated (2 and 4, not Lightning's 1 and 3), the
    HParams session's (the final validation's) on the same point."""
    check_dashboard(trained, ["train", "val"])
    events = dashboard(trained)
    assert [s.step for s in events.Scalars("val/loss")] == [2, 4]
    assert [s.step for s in events.Images("visuals/val/0")] == [2, 4]
    assert [s.step for s in events.Scalars("train/loss")] == [0, 1, 2, 3]  # each batch at the step it starts
    (final,) = dashboard(trained, session=True).Scalars("val/loss")
    assert final.step == 4 and abs(final.value - events.Scalars("val/loss")[-1].value) < 1e-6


def test_charts_read_and_compare_across_a_weight_sweep(trained: Path) -> None:
    """One content layer: no content_relu2_2 chart beside train/content (the same curve); each unweighted term
    also as its log10, which TensorBoard's tables (4 decimals) show where the term itself reads 0; HParams'
    metrics: the unweighted terms first (they compare across a sweep of loss.style_weight), the weighted total
    after them; metrics.json without the log10 companions."""
    events = dashboard(trained)
    scalars = events.Tags()["scalars"]
    assert "train/content" in scalars and not [t for t in scalars if t.startswith(("train/content_r", "val/content_r"))]
    assert {"train/style_relu1_2", "train/content_log10", "train/style_log10", "val/tv_log10"} <= set(scalars)
    content, logged = events.Scalars("val/content")[-1].value, events.Scalars("val/content_log10")[-1].value
    assert abs(math.log10(content) - logged) < 1e-4
    assert hparams_metrics(trained)[:4] == ["val/content", "val/style", "val/tv", "val/loss"]
    assert not [k for k in json.loads((trained / "metrics.json").read_text()) if k.endswith("_log10")]


def test_hparams_show_the_settings_that_matter_and_random_weights(trained: Path) -> None:
    hp = OmegaConf.load(trained / "tensorboard" / "hparams" / "hparams.yaml")
    assert hp["model.weights"] == "random"
    assert json.loads((trained / "metrics.json").read_text())["weights"] == "random"  # as stylize's
    assert hp["layers.style"] == "relu1_2:1.0,relu2_2:1.0,relu3_3:1.0,relu4_3:1.0"
    assert {"task.steps", "task.lr", "loss.style_weight", "fastnet.arch", "seed"} <= set(hp)
    assert len(hparams_columns(trained)) <= 20


def test_each_validation_photo_has_its_own_image_beside_its_stylization(trained: Path) -> None:
    """The 2 validation photos of 32 px: one image each, in the photos' order, the photo left of its
    stylization (2 px padding)."""
    events = dashboard(trained)
    assert sorted(events.Tags()["images"]) == ["visuals/val/0", "visuals/val/1"]
    image = events.Images("visuals/val/1")[-1]
    assert (image.width, image.height) == (2 * 34 + 2, 34 + 2)


def test_previews_keep_two_tiles_across_and_sort_in_the_photos_order() -> None:
    """12 photos of 300 px: 12 images of 2 tiles fit in 256 px (about 200 px a photo in TensorBoard's card),
    their index zero-padded so that TensorBoard's alphabetical order is the photos' order."""
    photos, stylized = torch.zeros(12, 3, 300, 300), torch.full((12, 3, 300, 300), 0.5)
    cards = previews(photos, stylized)
    assert list(cards) == sorted(cards) == [f"visuals/val/{i:02d}" for i in range(12)]
    assert cards["visuals/val/11"].shape == (3, 258 + 2, 2 * 258 + 2)
    assert [tile_mean(cards["visuals/val/03"], 0, col, 256) for col in (0, 1)] == [0, 0.5]
