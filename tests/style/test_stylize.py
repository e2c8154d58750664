"""The StyleTransfer module and the stylize task, on small images with random VGG weights."""

import json

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import hparams_columns, stylize_cfg, sweep_in_process
from transferlab import images, main, result, sweep
from transferlab.errors import ConfigError
from transferlab.style import task as stylize
from transferlab.style.module import ProgressBar
from transferlab.style.settings import StyleSettings, hparams


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


def test_tiles_share_the_style_targets(content_path, style_path):
    module, _ = stylize.build(StyleSettings.from_cfg(small_cfg(content_path, style_path)))
    style_hw = tuple(module.scene.styles[0].shape[-2:])
    seen = []
    module.encoder.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    for box in [(0, 0, 16, 16), (0, 16, 16, 16)]:
        tile = module.tile(box, module.scene.init, 1)
        tile.prepare_scale()
        module.count_tile(tile)
    assert seen.count(style_hw) == 1 and seen.count((16, 16)) == 2  # the styles once; each tile's content


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimizers_reduce_the_loss(tmp_path, content_path, style_path, optimizer):
    cfg = small_cfg(
        content_path, style_path, f"optimizer={optimizer}", "task.init=noise", "task.steps=10", "task.lr=0.05"
    )
    main.run_task(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    first = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("loss/total")[0].value
    assert metrics["loss_total"] < 0.5 * first
    assert metrics["steps"] == 10
    assert metrics["evaluations"] >= 10


def test_lbfgs_does_not_reevaluate_the_accepted_point(tmp_path, content_path, style_path):
    main.run_task(small_cfg(content_path, style_path, "task.steps=6"), tmp_path)
    evaluations = json.loads((tmp_path / "metrics.json").read_text())["evaluations"]
    # One evaluation per step plus the first; without the cache it is at least two per step.
    assert 6 <= evaluations < 12


def test_progress_bar_shows_the_loss_and_the_evaluations_without_logging_them(content_path, style_path):
    module, _ = stylize.build(StyleSettings.from_cfg(small_cfg(content_path, style_path)))
    bar = ProgressBar()
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, callbacks=[bar])
    trainer.fit(module)
    shown = bar.get_metrics(trainer, module)
    assert shown["loss"] == f"{float(module.last_losses['loss/total']):.4g}"
    assert shown["evaluations"] == module.evaluations >= 2
    assert not trainer.progress_bar_metrics  # no self.log bookkeeping per step


def test_run_writes_image_metrics_and_tensorboard(tmp_path, content_path, style_path):
    main.run_task(small_cfg(content_path, style_path), tmp_path)
    final = images.load_image(tmp_path / "final.png")
    assert final.shape == (3, 27, 32)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "loss/total",
        "loss/content",
        "loss/style",
        "style/loss_relu1_1",
        "style/loss_relu5_1",
        "train/evaluations",
    } <= scalars
    # Time Series orders groups by tag prefix: the images' group sorts after the loss curves'.
    assert events.Tags()["images"] == ["stylized/preview", "stylized/final"]
    assert [e.step for e in events.Images("stylized/preview")] == [2, 4]
    assert [e.step for e in events.Images("stylized/final")] == [4]
    # No chart a user cannot read: no epoch, no flat scale on one scale, no single-point finals.
    assert "loss/tv" not in scalars  # loss.tv_weight=0: no flat zero chart
    assert "epoch" not in scalars and "train/scale" not in scalars and not [t for t in scalars if t.startswith("final")]
    assert [e.step for e in events.Scalars("to_content/ssim")] == [2, 4] and "to_style/gram_mean" in scalars
    # the small figures also as their log10, which TensorBoard's tables (4 decimals) show
    assert {"loss/content_log10", "to_style/gram_mean_log10"} <= scalars and "loss/style_log10" not in scalars
    assert any(m.plugin_data.plugin_name == "custom_scalars" for m in events.summary_metadata.values())
    session = EventAccumulator(str(tmp_path / "tensorboard" / "hparams")).Reload()
    assert any(m.plugin_data.plugin_name == "hparams" for m in session.summary_metadata.values())
    assert {"loss/total", "to_content/ssim", "to_style/gram_mean"} <= set(
        session.Tags()["scalars"]
    )  # the HParams table's metrics
    # The table's final SSIM is the end of the SSIM curve.
    assert session.Scalars("to_content/ssim")[-1].value == pytest.approx(events.Scalars("to_content/ssim")[-1].value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_bf16_mixed_runs_on_cpu(tmp_path, content_path, style_path):
    assert main.run_task(small_cfg(content_path, style_path, "precision=bf16-mixed", "task.steps=2"), tmp_path) > 0


def test_noise_init_is_seeded(content_path, style_path):
    cfg = small_cfg(content_path, style_path, "task.init=noise")
    torch.manual_seed(cfg.seed)
    a = stylize.build(StyleSettings.from_cfg(cfg))[0].image.detach().clone()
    torch.manual_seed(cfg.seed)
    torch.testing.assert_close(stylize.build(StyleSettings.from_cfg(cfg))[0].image.detach(), a)


def test_hparams_lead_with_the_overrides_and_show_random_weights(content_path, style_path):
    settings = StyleSettings.from_cfg(small_cfg(content_path, style_path))
    hp = result.leading_hparams(
        hparams(settings), ["loss.style_weight=1e4", "trainer.accelerator=cpu", "hydra.job.num=0"]
    )
    assert list(hp)[:2] == ["* loss.style_weight", "* trainer.accelerator"] and hp["* loss.style_weight"] == 1e3
    assert hp["model.weights"] == "random" and "hydra.job.num" not in hp
    assert not [k for k in hp if "relu" in k or "betas" in k]  # no per-layer weights, no Adam settings under L-BFGS
    assert len(hp) <= 20


def test_hparams_of_a_sweep_lead_with_the_swept_keys(content_path, style_path):
    settings = StyleSettings.from_cfg(small_cfg(content_path, style_path))
    overrides = ["model.weights=null", "task.steps=4", "loss.style_weight=1e4"]
    hp = result.leading_hparams(hparams(settings), overrides, {"task.steps"})
    assert list(hp)[:3] == ["* task.steps", "= model.weights", "= loss.style_weight"]
    # TensorBoard sorts the columns by name: in byte order and in locale order "*" comes before "=".
    assert sorted(hp)[:3] == ["* task.steps", "= loss.style_weight", "= model.weights"]


@pytest.mark.parametrize("value,steps,every", [("auto", 300, 30), ("auto", 6, 1), (0, 300, 0), (25, 300, 25)])
def test_image_every_auto_gives_about_ten_previews(content_path, style_path, value, steps, every):
    cfg = stylize_cfg(content_path, style_path, f"task.image_every={value}", steps=steps)
    assert StyleSettings.from_cfg(cfg).image_every == every


def test_image_every_refuses_other_words(content_path, style_path):
    with pytest.raises(ConfigError, match=r"task.image_every='often' is invalid; give auto, 0"):
        StyleSettings.from_cfg(stylize_cfg(content_path, style_path, "task.image_every=often"))


def test_sweep_of_two_jobs_writes_a_contact_sheet(tmp_path, content_path, style_path):
    """Each job's result names final.png and its caption; HParams lead with the swept key."""
    common = ["model.weights=null", f"task.content={content_path}", f"task.style={style_path}", "task.size=32"]
    common += ["task.steps=2", "task.image_every=0", "trainer.accelerator=cpu"]
    sheet = Image.open(sweep_in_process(tmp_path / "sweep", common, "loss.style_weight", ["1e2", "1e4"]))
    assert sheet.width == 2 * 256  # a tile per job
    loss = json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())["loss_total"]
    labels = sweep.labels(sweep.job_dirs(tmp_path / "sweep"))
    assert labels[1][:2] == ["loss.style_weight=1e4", f"loss {loss:.4g}"]
    assert hparams_columns(tmp_path / "sweep" / "0")[:2] == ["* loss.style_weight", "= model.weights"]
