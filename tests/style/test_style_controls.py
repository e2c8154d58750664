"""Each style-transfer control, shown numerically on small images with random VGG weights."""

import json

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.models import vgg

from helpers import make_image, stylize_cfg
from transferlab import color, images, main
from transferlab.errors import ConfigError, ImageError
from transferlab.style import scene
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings


def cfg_for(content_path, style_path, *overrides):
    return stylize_cfg(content_path, style_path, *overrides, size=48, steps=3)


def mask(path, size, left_white: bool):
    w, h = size
    m = Image.new("L", size, 0 if left_white else 255)
    m.paste(255 if left_white else 0, (0, 0, w // 2, h))
    m.save(path)
    return path


@pytest.mark.slow
def test_coarse_to_fine_runs_each_scale_and_ends_at_full_size(tmp_path, content_path, style_path):
    cfg = cfg_for(content_path, style_path, "task.scales=[32]", "task.scale_steps=[2]", "task.steps=2")
    main.run_task(cfg, tmp_path)
    assert images.load_image(tmp_path / "final.png").shape == (3, 40, 48)
    scales = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("train/scale")
    assert [s.value for s in scales] == [0, 0, 1, 1]
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 4


def test_finer_scale_starts_with_the_initial_images_detail(content_path, style_path):
    cfg = cfg_for(content_path, style_path, "task.size=64", "task.scales=[32]", "task.scale_steps=[2]")
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    full = module.hw(1)
    init = module.scene.init.unsqueeze(0)
    # A coarse image that is the initial image downsampled comes back as the initial image, not blurred.
    torch.testing.assert_close(module.upsampled(full), images.resize(init, full), atol=1e-6, rtol=0)
    # A coarse result keeps its low frequencies and gains the initial image's detail.
    with torch.no_grad():
        module.image.copy_(torch.full_like(module.image, 0.5))
    detail = images.resize(init, full) - images.resize(images.resize(init, module.hw(0)), full)
    torch.testing.assert_close(module.upsampled(full), (0.5 + detail).clamp(0, 1))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["task.scales=[32,64]", "task.scale_steps=[2]"], "give one step count per scale"),
        (["task.scales=[64]", "task.scale_steps=[2]"], "must increase and stay below task.size"),
        (["task.style_weights=[1,2]"], "task.style_weights has 2 values for 1 styles"),
        (["task.style=[a.png,b.png]", "task.style_weights=[1,-1]"], r"task.style_weights\[1\]=-1 is invalid"),
        (["task.style_masks=[m.png,n.png]"], "task.style_masks has 2 masks for 1 styles"),
        (["task.color=sepia"], "task.color='sepia' is invalid; choose one of none, luminance, histogram"),
        (["task.tile=64", "task.tile_overlap=40"], "must be below half of task.tile"),
    ],
)
def test_bad_control_values_fail_with_one_line(content_path, style_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        StyleSettings.from_cfg(cfg_for(content_path, style_path, *overrides))


def test_luminance_only_transfer_keeps_the_contents_colours(tmp_path, content_path, style_path):
    cfg = cfg_for(content_path, style_path, "task.color=luminance", "task.init=noise", "task.steps=3")
    main.run_task(cfg, tmp_path)
    out, content = images.load_image(tmp_path / "final.png"), images.load_image(content_path, 48)
    chroma = lambda x: color.rgb_to_yiq(x)[1:]  # noqa: E731
    inner = (slice(None), slice(2, -2), slice(2, -2))
    # Equal up to 8-bit rounding and clamping; the luminance did change.
    assert (chroma(out) - chroma(content))[inner].abs().mean() < 0.01
    assert (color.luminance(out) - color.luminance(content)).abs().mean() > 0.02


def test_histogram_matching_recolours_the_style_to_the_content(content_path, tmp_path):
    red_style = tmp_path / "red.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(red_style)
    make_image(red_style, seed=3)
    settings = StyleSettings.from_cfg(cfg_for(content_path, red_style, "task.color=histogram"))
    loaded = scene.load(settings.inputs, settings.size)
    content = images.load_image(content_path, 48)
    torch.testing.assert_close(loaded.styles[0].mean(dim=(1, 2)), content.mean(dim=(1, 2)), atol=0.02, rtol=0)


def test_several_styles_blend_by_normalized_weights(tmp_path, content_path, style_path):
    other = make_image(tmp_path / "other.png", seed=9)
    cfg = cfg_for(content_path, style_path, f"task.style=[{style_path},{other}]", "task.style_weights=[3,1]")
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    assert module.scene.style_weights == [0.75, 0.25]
    module.on_fit_start()
    blended = module.losses()["loss/style"]
    parts = []
    for weights in ([1.0, 0.0], [0.0, 1.0]):
        module.perceptual.style_weights = weights
        parts.append(module.losses()["loss/style"])
    torch.testing.assert_close(blended, 0.75 * parts[0] + 0.25 * parts[1])


def test_masks_restrict_each_style_to_its_region(tmp_path, content_path, style_path):
    other = make_image(tmp_path / "other.png", seed=9)
    # Masks at another size than the output are resized.
    masks = [mask(tmp_path / "left.png", (24, 20), True), mask(tmp_path / "right.png", (24, 20), False)]
    cfg = cfg_for(
        content_path, style_path, f"task.style=[{style_path},{other}]", f"task.style_masks=[{masks[0]},{masks[1]}]"
    )
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    module.on_fit_start()
    relu1 = module.perceptual.mask(0, "relu1_1")[0, 0]
    assert relu1[:, :20].min() > 0.99 and relu1[:, 28:].max() < 0.01
    # Changing the right half of the image does not change the left style's Gram statistics there.
    features = module.encoder(module.image.detach())["relu1_1"]
    from transferlab.losses import gram_matrix

    changed = module.image.detach().clone()
    changed[..., 30:] = torch.rand_like(changed[..., 30:])
    features_changed = module.encoder(changed)["relu1_1"]
    left = module.perceptual.mask(0, "relu1_1")
    torch.testing.assert_close(gram_matrix(features, left), gram_matrix(features_changed, left), atol=1e-4, rtol=1e-3)


def test_masks_that_leave_the_image_uncovered_are_refused(tmp_path, content_path, style_path):
    half = mask(tmp_path / "left.png", (48, 40), True)
    with pytest.raises(ImageError, match=r"task.style_masks leave 50.0% of the image uncovered"):
        settings = StyleSettings.from_cfg(cfg_for(content_path, style_path, f"task.style_masks=[{half}]"))
        scene.load(settings.inputs, settings.size)


@pytest.mark.slow
def test_zero_strength_region_stays_at_the_content(tmp_path, content_path, style_path):
    strength = mask(tmp_path / "strength.png", (48, 40), False)  # left half 0, right half 1
    cfg = cfg_for(content_path, style_path, f"task.strength_map={strength}", "task.steps=4")
    main.run_task(cfg, tmp_path)
    out, content = images.load_image(tmp_path / "final.png"), images.load_image(content_path, 48)
    assert (out - content)[..., :20].abs().max() <= 1.5 / 255  # 8-bit rounding only
    assert (out - content)[..., 28:].abs().mean() > 0.01


def test_init_from_the_style_image(content_path, style_path):
    module, _ = stylize.build(StyleSettings.from_cfg(cfg_for(content_path, style_path, "task.init=style")))
    style = images.resize(images.load_image(style_path, 48), (40, 48))
    torch.testing.assert_close(module.image.detach()[0], style)


def test_avg_pooling_and_caffe_weights_from_a_generated_state_dict(tmp_path, content_path, style_path):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg.make_layers(vgg.cfgs["E"]).state_dict().items()}
    torch.save(state, tmp_path / "vgg19-d01eb7cb.pth")
    cfg = cfg_for(
        content_path,
        style_path,
        "model=vgg19_caffe",
        f"model.weights={tmp_path / 'vgg19-d01eb7cb.pth'}",
        "model.pooling=avg",
    )
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    encoder = module.encoder
    assert encoder.normalize.bgr and encoder.feature_scale == 224.0
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in encoder.stack)
    torch.testing.assert_close(encoder.stack[0].weight, state["features.0.weight"])


@pytest.mark.slow
def test_resumed_run_ends_at_the_same_image(tmp_path, content_path, style_path):
    common = ("task.scales=[32]", "task.scale_steps=[3]", "task.steps=3")
    main.run_task(cfg_for(content_path, style_path, *common), tmp_path / "whole")
    # Stop after 4 of 6 steps (one into the second scale), then resume from the checkpoint.
    main.run_task(
        cfg_for(
            content_path,
            style_path,
            "task.scales=[32]",
            "task.scale_steps=[3]",
            "task.steps=1",
            "task.checkpoint_every=4",
        ),
        tmp_path / "first",
    )
    checkpoint = next((tmp_path / "first" / "checkpoints").glob("step*.ckpt"))
    main.run_task(cfg_for(content_path, style_path, *common, f"ckpt_path={checkpoint}"), tmp_path / "resumed")
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert resumed["loss_total"] == whole["loss_total"]
    assert torch.equal(
        images.load_image(tmp_path / "whole" / "final.png"), images.load_image(tmp_path / "resumed" / "final.png")
    )


@pytest.mark.slow
def test_checkpoint_from_another_size_is_refused(tmp_path, content_path, style_path):
    main.run_task(cfg_for(content_path, style_path, "task.checkpoint_every=3"), tmp_path / "a")
    checkpoint = next((tmp_path / "a" / "checkpoints").glob("step*.ckpt"))
    with pytest.raises(ConfigError, match="resume with the config it was made with"):
        main.run_task(
            cfg_for(content_path, style_path, "task.size=64", "task.steps=4", f"ckpt_path={checkpoint}"), tmp_path / "b"
        )


def test_quality_metrics_are_reported(tmp_path, content_path, style_path):
    main.run_task(cfg_for(content_path, style_path), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < metrics["quality_ssim"] <= 1
    assert {f"quality_gram_relu{i}_1" for i in range(1, 6)} <= set(metrics)
    assert metrics["quality_gram_mean"] > 0


@pytest.mark.slow
def test_tiles_cover_a_large_output_in_bounded_pieces(tmp_path, content_path, style_path, monkeypatch):
    sizes = []
    fit = stylize.StyleTransfer.on_fit_start

    def record(self):
        fit(self)
        sizes.append(tuple(self.image.shape[-2:]))

    monkeypatch.setattr(stylize.StyleTransfer, "on_fit_start", record)
    cfg = cfg_for(
        content_path,
        style_path,
        "task.size=96",
        "task.tile=64",
        "task.tile_overlap=8",
        "task.scales=[48]",
        "task.scale_steps=[2]",
        "task.steps=2",
    )
    main.run_task(cfg, tmp_path)
    assert sizes[0] == (40, 48)  # the coarse scale, whole
    assert len(sizes) == 1 + 4 and all(max(s) <= 64 for s in sizes[1:])  # then 2x2 tiles
    out = images.load_image(tmp_path / "final.png")
    assert out.shape == (3, 80, 96)


def test_auto_size_is_the_largest_that_fits_the_memory_budget(content_path, style_path, monkeypatch):
    from transferlab import memory as device_memory
    from transferlab import runtime
    from transferlab.style import estimate

    monkeypatch.setattr(device_memory, "available_memory", lambda device: 800 * 2**20)
    cfg = cfg_for(content_path, style_path, "task.size=auto", "task.memory_budget=0.5")
    size, budget = StyleSettings.from_cfg(cfg).size, 400 * 2**20

    def peak(long_side):
        hw = (round(long_side * 40 / 48), long_side)
        style_layers = [f"relu{i}_1" for i in range(1, 6)]
        # A CPU run on glibc keeps freed blocks (runtime.configure), and holds Winograd kernels.
        return estimate.estimate(
            "vgg19",
            ["relu4_2"],
            style_layers,
            hw,
            hw,
            "lbfgs",
            100,
            heap_block_limit=runtime.RuntimeSettings(
                flush_denormal=True, keep_freed_memory=True, winograd=True
            ).heap_block_limit("cpu"),
            fast_convs=True,
        ).peak_bytes

    assert size % 32 == 0 and peak(size) <= budget < peak(size + 32)


def test_run_logs_its_memory_and_time_estimate(tmp_path, content_path, style_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="transferlab.style.task"):
        main.run_task(cfg_for(content_path, style_path, "task.steps=1"), tmp_path)
    assert any("estimate: peak memory" in r.message and "s per evaluation" in r.message for r in caplog.records)


def test_winograd_can_be_switched_off(content_path, style_path):
    from transferlab import winograd

    def build(*overrides):
        s = StyleSettings.from_cfg(cfg_for(content_path, style_path, "task.size=64", *overrides))
        torch.manual_seed(0)
        module = stylize.build(s)[0]
        module.on_fit_start()
        loss = module.losses()["loss/total"]
        loss.backward()
        fast = [m for m in module.encoder.modules() if isinstance(m, winograd.WinogradConv2d)]
        hw = tuple(module.image.shape[-2:])
        return s.memory.estimate(hw, hw).parts, fast, module.image.grad.clone()

    parts_on, fast_on, grad_on = build()
    parts_off, fast_off, grad_off = build("runtime.winograd=false")
    assert fast_on and not fast_off
    assert "winograd kernels" in parts_on and "winograd kernels" not in parts_off
    torch.testing.assert_close(grad_off, grad_on, rtol=1e-4, atol=1e-4 * float(grad_on.abs().max()))


def test_estimate_shows_the_total_time_over_every_scale_and_tile(content_path, style_path, caplog, monkeypatch):
    import logging

    from transferlab.style import estimate, tiling

    monkeypatch.setattr(estimate, "conv_throughput", lambda *args, **kwargs: 1e9)  # 1 GFLOP/s: seconds = GFLOP
    common = ("task.size=128", "task.scales=[64]", "task.scale_steps=[5]", "task.steps=3")
    settings = StyleSettings.from_cfg(cfg_for(content_path, style_path, *common, "task.tile=64", "task.tile_overlap=8"))
    module, _ = stylize.build(settings)
    with caplog.at_level(logging.INFO, logger="transferlab.style.task"):
        stylize.log_estimate(settings, module)
    [line] = [r.message for r in caplog.records if r.message.startswith("estimate:")]
    coarse = settings.memory.estimate((53, 64), (64, 64), 1e9).seconds  # the 64 px scale: 5 steps
    tiles = len(tiling.tile_boxes(107, 128, 64, 8))  # the 128 px scale (107 x 128) in tiles of 64 px: 3 steps each
    tile = settings.memory.estimate((64, 64), (128, 128), 1e9).seconds
    total = estimate.duration(5 * coarse + tiles * 3 * tile)
    assert tiles > 1 and f"total at least {total} for {5 + 3 * tiles} evaluations over 2 scales (one per step;" in line
    assert "assuming the machine stays idle" in line and "measured just now (one 3x3 convolution" in line
    assert estimate.duration(42.4) == "42 s" and estimate.duration(185) == "3 min 05 s"
    assert estimate.duration(3720) == "1 h 02 min"
