"""The StyleTransfer module and the stylize task, on small images with random VGG weights."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import stylize_cfg
from transferlab import images
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings


def small_cfg(content_path, style_path, *overrides):
    return stylize_cfg(content_path, style_path, "task.image_every=2", *overrides)


def test_only_parameter_is_the_image_and_vgg_is_truncated(content_path, style_path):
    module, _ = stylize.build(StyleSettings.from_cfg(small_cfg(content_path, style_path, "layers=seed")))
    assert [name for name, p in module.named_parameters() if p.requires_grad] == ["image"]
    assert module.encoder.names[-1] == "relu4_3"  # the deepest layer of the seed set
    assert module.image.shape == (1, 3, 27, 32)  # long side 32, aspect kept


def test_targets_are_computed_once(content_path, style_path):
    module, _ = stylize.build(StyleSettings.from_cfg(small_cfg(content_path, style_path)))
    calls = []
    module.encoder.register_forward_hook(lambda *args: calls.append(1))
    module.on_fit_start()
    assert len(calls) == 2
    module.losses()
    assert len(calls) == 3  # one pass per evaluation; targets are not recomputed


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimizers_reduce_the_loss(tmp_path, content_path, style_path, optimizer):
    cfg = small_cfg(
        content_path, style_path, f"optimizer={optimizer}", "task.init=noise", "task.steps=10", "task.lr=0.05"
    )
    stylize.run(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    first = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("loss/total")[0].value
    assert metrics["loss_total"] < 0.5 * first
    assert metrics["steps"] == 10
    assert metrics["evaluations"] >= 10


def test_lbfgs_does_not_reevaluate_the_accepted_point(tmp_path, content_path, style_path):
    stylize.run(small_cfg(content_path, style_path, "task.steps=6"), tmp_path)
    evaluations = json.loads((tmp_path / "metrics.json").read_text())["evaluations"]
    # One evaluation per step plus the first; without the cache it is at least two per step.
    assert 6 <= evaluations < 12


def test_run_writes_image_metrics_and_tensorboard(tmp_path, content_path, style_path):
    stylize.run(small_cfg(content_path, style_path), tmp_path)
    final = images.load_image(tmp_path / "final.png")
    assert final.shape == (3, 27, 32)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "loss/total",
        "loss/content",
        "loss/style",
        "loss/tv",
        "style/loss_relu1_1",
        "style/loss_relu5_1",
        "train/evaluations",
    } <= scalars
    assert [e.step for e in events.Images("image")] == [2, 4]
    assert events.Images("final")
    hparams = EventAccumulator(str(tmp_path / "tensorboard")).Reload().summary_metadata
    assert any("hparams" in meta.plugin_data.plugin_name for meta in hparams.values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_bf16_mixed_runs_on_cpu(tmp_path, content_path, style_path):
    assert stylize.run(small_cfg(content_path, style_path, "precision=bf16-mixed", "task.steps=2"), tmp_path) > 0


def test_noise_init_is_seeded(content_path, style_path):
    cfg = small_cfg(content_path, style_path, "task.init=noise")
    torch.manual_seed(cfg.seed)
    a = stylize.build(StyleSettings.from_cfg(cfg))[0].image.detach().clone()
    torch.manual_seed(cfg.seed)
    torch.testing.assert_close(stylize.build(StyleSettings.from_cfg(cfg))[0].image.detach(), a)
