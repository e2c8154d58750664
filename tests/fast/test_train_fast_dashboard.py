"""train_fast's TensorBoard and HParams keep the one dashboard convention (tests/helpers.check_dashboard);
train_adain's: tests/fast/test_adain_tasks.py."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from helpers import check_dashboard, dashboard, hparams_columns


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
