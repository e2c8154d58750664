"""Fine-tuning's TensorBoard and HParams keep the one dashboard convention (tests/helpers.check_dashboard)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from helpers import check_dashboard, dashboard, hparams_columns


def test_dashboard_opens_on_losses_and_accuracies(trained: Path) -> None:
    """train/ and val/ (losses, accuracies; learning rates and epoch times after them in train/), then each
    class's accuracy (val_class/), the confusion matrices and mistakes under visuals/; no single-point chart."""
    check_dashboard(trained, ["train", "val", "val_class"])  # each class's accuracy after val/loss
    events = dashboard(trained)
    assert {"val_class/acc_ants", "val_class/acc_bees"} <= set(events.Tags()["scalars"])
    assert not {t for t in events.Tags()["scalars"] if t.startswith("val/acc_")} - {"val/acc_micro", "val/acc_macro"}
    assert {"train/loss", "train/acc_macro", "train/lr_head", "val/loss", "val/acc_macro"} <= set(
        events.Tags()["scalars"]
    )
    assert "visuals/val_confusion_matrix" in events.Tags()["images"]


def test_epoch_figures_sit_at_the_step_the_epoch_ended_on(trained: Path) -> None:
    """Each epoch's train and val figures at the step its validation saw (3 batches an epoch: 3, 6), and the
    HParams session's (the best checkpoint's) at the best epoch's step, on its val curve."""
    events = dashboard(trained)
    steps = [s.step for s in events.Scalars("val/loss")]
    assert steps == [3, 6] == [s.step for s in events.Scalars("train/loss")]
    assert [s.step for s in events.Images("visuals/val_confusion_matrix")] == steps
    (best,) = dashboard(trained, session=True).Scalars("val/loss")
    curve = {s.step: s.value for s in events.Scalars("val/loss")}
    assert best.step in curve and abs(best.value - curve[best.step]) < 1e-4


def test_hparams_show_the_settings_that_matter_and_random_weights(trained: Path) -> None:
    hp = OmegaConf.load(trained / "tensorboard" / "hparams" / "hparams.yaml")
    assert hp["model.weights"] == "random"
    assert json.loads((trained / "metrics.json").read_text())["weights"] == "random"  # as stylize's
    assert {"task.lr", "task.epochs", "model.arch", "data.batch_size", "seed"} <= set(hp)
    assert len(hparams_columns(trained)) <= 20 and not [k for k in hp if "augment" in k]
