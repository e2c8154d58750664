"""Every control on video frames, per method (issue 24 item 1): alpha, strength maps (a file, held fixed or
moved by the flow; auto), masks routing styles, colour; AdaIN with the clip's statistics (item 3); bad inputs
in one line. Tiny frames, random weights: the mechanics, not the look."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.helpers import make_image
from tests.video.conftest import ADAIN, frame_folder, pan_frames, square_frames, textured, write_clip
from tests.video.test_video_task import video_cfg
from transferlab import color, images, main
from transferlab.errors import ConfigError, ImageError, TransferLabError
from transferlab.fast import stylizer
from transferlab.fast.arbitrary import ops
from transferlab.video import controls, io
from transferlab.video.settings import VideoSettings

FAST = ("task.method=fast", "task.baseline=false")


def run_video(tmp_path: Path, clip: Path, style, *overrides: str, name: str = "run") -> list[torch.Tensor]:
    """The run's finished frames (lossless PNGs), in order."""
    out = tmp_path / name
    main.run_task(video_cfg(clip, style, *overrides), out)
    return [images.load_image(p) for p in sorted((out / "frames").glob("*.png"))]


def inputs(clip: Path) -> list[torch.Tensor]:
    return list(io.read_frames(clip))


def gray_map(path: Path, value: torch.Tensor) -> Path:
    """A grayscale PNG of ``value`` ``[H, W]`` in [0, 1]."""
    Image.fromarray((value * 255).round().byte().numpy(), "L").save(path)
    return path


def half_map(path: Path, h: int, w: int, left: float, right: float) -> Path:
    value = torch.full((h, w), right)
    value[:, : w // 2] = left
    return gray_map(path, value)


def two_styles(tmp_path: Path) -> tuple[Path, Path]:
    """Two style images far apart (the second the first's negative, from another seed)."""
    a, b = make_image(tmp_path / "a.png", (40, 40), seed=3), make_image(tmp_path / "b.png", (40, 40), seed=9)
    Image.eval(Image.open(b), lambda v: 255 - v).save(b)
    return a, b


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return frame_folder(tmp_path / "clip", pan_frames(n=3))


@pytest.mark.parametrize("method", ["fast", "optimize"])
def test_alpha_zero_and_a_zero_strength_map_return_the_content_frames(
    tmp_path: Path, clip: Path, style_image: Path, tiny_network: Path, method: str
) -> None:
    """With the temporal blend on (its default) and the temporal loss: a pixel without style is the frame."""
    zero = gray_map(tmp_path / "zero.png", torch.zeros(20, 30))  # another size: resized to the frames
    common = ("task.method=fast", f"task.network={tiny_network}") if method == "fast" else ("task.max_frames=2",)
    style = None if method == "fast" else style_image
    for control in ("task.alpha=0", f"task.strength_map={zero}"):
        frames = run_video(tmp_path, clip, style, *common, control, name=control.split("=")[0])
        for out, frame in zip(frames, inputs(clip)):
            assert (out - frame).abs().max() <= 1 / 255 + 1e-6


def test_a_strength_map_keeps_the_content_where_it_is_zero(tmp_path: Path, clip: Path, tiny_network: Path) -> None:
    half = half_map(tmp_path / "half.png", 48, 64, left=0.0, right=1.0)
    frames = run_video(tmp_path, clip, None, *FAST, f"task.network={tiny_network}", f"task.strength_map={half}")
    for out, frame in zip(frames, inputs(clip)):
        assert (out - frame)[:, :, :30].abs().max() <= 1 / 255 + 1e-6  # left of the map's soft edge
        assert (out - frame)[:, :, 34:].abs().mean() > 0.05


@pytest.mark.parametrize("method", ["fast", "optimize"])
def test_luminance_keeps_each_frames_colours(
    tmp_path: Path, clip: Path, style_image: Path, tiny_network: Path, method: str
) -> None:
    """The frame's chroma (YIQ's I and Q) under the stylized luminance (blend 0: each output its own)."""
    common = ("task.method=fast", f"task.network={tiny_network}") if method == "fast" else ("task.max_frames=2",)
    style = None if method == "fast" else style_image
    frames = run_video(tmp_path, clip, style, *common, "task.color=luminance", "task.blend=0", "task.baseline=false")
    for out, frame in zip(frames, inputs(clip)):
        inside = ((out > 2 / 255) & (out < 253 / 255)).all(0)  # where the recombination did not clip
        chroma = (color.rgb_to_yiq(out) - color.rgb_to_yiq(frame))[1:]
        assert chroma[:, inside].abs().max() < 0.02
        assert (color.luminance(out) - color.luminance(frame)).abs().mean() > 0.02


def test_histogram_gives_each_frame_its_colour_statistics(tmp_path: Path, clip: Path, tiny_network: Path) -> None:
    frames = run_video(
        tmp_path, clip, None, *FAST, f"task.network={tiny_network}", "task.color=histogram", "task.blend=0"
    )
    for out, frame in zip(frames, inputs(clip)):
        assert (out.mean((1, 2)) - frame.mean((1, 2))).abs().max() < 0.03


def test_auto_strength_is_each_frames_saliency(tmp_path: Path, clip: Path, tiny_network: Path) -> None:
    """task.strength_map=auto is recomputed from every frame (a moving subject takes its protection along)."""
    s = VideoSettings.from_cfg(video_cfg(clip, None, *FAST, f"task.network={tiny_network}", "task.strength_map=auto"))
    maps = controls.FrameMaps(s)
    from transferlab import saliency

    for frame in inputs(clip):
        assert torch.equal(maps(frame).strength, saliency.auto_strength(frame.unsqueeze(0))[0])


def test_a_fixed_map_stays_and_a_flow_map_moves_with_the_pan(tmp_path: Path, clip: Path, tiny_network: Path) -> None:
    """pan_frames move right by 2 px a frame: a map held fixed keeps its edge; one moved by the flow takes it
    along (its left half, full strength, grows by 2 px a frame)."""
    half = half_map(tmp_path / "half.png", 48, 64, left=1.0, right=0.0)
    common = (*FAST, f"task.network={tiny_network}", f"task.strength_map={half}")
    found = {}
    for motion in ("fixed", "flow"):
        maps = controls.FrameMaps(VideoSettings.from_cfg(video_cfg(clip, None, *common, f"task.map_motion={motion}")))
        found[motion] = [maps(frame).strength for frame in inputs(clip)]
    assert all(torch.equal(m, found["fixed"][0]) for m in found["fixed"])
    width = [float(m.sum(-1).mean()) for m in found["flow"]]  # full-strength columns per row
    assert width[1] - width[0] == pytest.approx(2, abs=0.5) and width[2] - width[1] == pytest.approx(2, abs=0.5)


def test_masks_route_two_styles_with_an_adain_network(tmp_path: Path, clip: Path, adain_network: Path) -> None:
    """Style A where its mask is white (left), B on the right: each side close to that style alone."""
    a, b = two_styles(tmp_path)
    masks = half_map(tmp_path / "ma.png", 48, 64, 1.0, 0.0), half_map(tmp_path / "mb.png", 48, 64, 0.0, 1.0)
    common = (*FAST, f"task.network={adain_network}", "task.blend=0")
    routed = run_video(
        tmp_path, clip, None, *common, f"task.style=[{a},{b}]", f"task.style_masks=[{masks[0]},{masks[1]}]"
    )
    alone = {k: run_video(tmp_path, clip, p, *common, name=k) for k, p in (("a", a), ("b", b))}
    for i, out in enumerate(routed):
        left, right = (slice(None), slice(None), slice(0, 16)), (slice(None), slice(None), slice(48, 64))
        assert (out - alone["a"][i])[left].abs().mean() < 0.5 * (out - alone["b"][i])[left].abs().mean()
        assert (out - alone["b"][i])[right].abs().mean() < 0.5 * (out - alone["a"][i])[right].abs().mean()


def test_clip_statistics_are_those_of_all_frames_together() -> None:
    feats = [torch.randn(1, 4, 3, 5) + k for k in range(3)]
    mean, std = ops.mean_std_over(iter(feats))
    whole = torch.cat([f.flatten(2) for f in feats], dim=2).unsqueeze(-1)
    expected = ops.mean_std(whole)
    assert torch.allclose(mean, expected[0], atol=1e-5) and torch.allclose(std, expected[1], atol=1e-5)


def test_global_stats_on_a_static_clip_give_zero_flicker(
    tmp_path: Path, adain_network: Path, style_image: Path
) -> None:
    static = frame_folder(tmp_path / "static", [textured(48, 64)] * 4)
    out = tmp_path / "run"
    main.run_task(
        video_cfg(static, style_image, "task.method=fast", f"task.network={adain_network}", "task.global_stats=true"),
        out,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    written = {(out / "frames" / f"frame_{i:06d}.png").read_bytes() for i in range(4)}
    assert metrics["frames"] == 4 and len(written) == 1  # every frame the same output
    assert metrics["flicker"] < 1e-12  # zero but for the warp's float rounding of a zero flow (1e-17)


def test_global_stats_normalize_every_frame_by_the_clips(
    tmp_path: Path, adain_network: Path, style_image: Path
) -> None:
    """A clip that brightens: each frame stylized with the statistics of all frames, not its own."""
    frames = [textured(48, 64) * (0.4 + 0.2 * k) for k in range(3)]
    clip = frame_folder(tmp_path / "brightening", frames)
    common = (*FAST, f"task.network={adain_network}", "task.blend=0")
    shared = run_video(tmp_path, clip, style_image, *common, "task.global_stats=true", name="shared")
    own = run_video(tmp_path, clip, style_image, *common, name="own")
    _, net, _ = stylizer.read_network(adain_network, "task.network")
    code = net.code(stylizer.style_image(str(style_image), "task.style", None))
    with torch.inference_mode():
        read = inputs(clip)
        stats = ops.mean_std_over(net.content_features(f.unsqueeze(0)) for f in read)
        expected = [net.stylize(f.unsqueeze(0), [code], content_stats=stats)[0] for f in read]
        first = net.content_features(read[0].unsqueeze(0))
    for out, want in zip(shared, expected):
        assert (out - want).abs().max() <= 1 / 255 + 1e-5
    own_mean = ops.mean_std(first)[0]  # the clip's statistics are not the first frame's own
    assert not torch.allclose(stats[0], own_mean, rtol=1e-3, atol=1e-6)
    assert len(own) == 3


def test_bad_controls_fail_in_one_line(tmp_path: Path, clip: Path, style_image: Path, tiny_network: Path) -> None:
    mask = half_map(tmp_path / "m.png", 48, 64, 1.0, 0.0)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not parsed at the door")
    fast = ("task.method=fast", f"task.network={tiny_network}")
    for overrides, message in (
        (("task.map_motion=wobble",), "task.map_motion"),
        (("task.alpha=2",), r"task.alpha=2.* \[0, 1\]"),
        (("task.color=sepia",), "task.color"),
        (("task.global_stats=yes",), "task.global_stats"),
        (("task.global_stats=true",), "task.global_stats=true .*task.method=optimize has none"),
        (("task.method=fast", f"task.network={onnx}", "task.global_stats=true"), "exported pipeline normalizes"),
        (("task.method=fast", f"task.network={onnx}", f"task.style=[{style_image},{style_image}]"), "exported"),
        ((f"task.style_masks=[{mask},{mask}]",), "task.style_masks has 2 entries for 1 styles"),
        ((f"task.style_masks=[{mask}]", "task.style_weights=[1]"), "task.style_weights and task.style_masks"),
        ((*fast, "task.style_weights=[1]"), "task.style_weights has 1 entries for 0 styles"),
        ((f"task.strength_map={tmp_path / 'none.png'}",), "task.strength_map=.*is not a file"),
        ((f"task.style_masks=[{tmp_path / 'none.png'}]",), "none.png"),
    ):
        with pytest.raises(Exception, match=message) as info:
            VideoSettings.from_cfg(video_cfg(clip, None if "fast" in str(overrides) else style_image, *overrides))
        assert "\n" not in str(info.value)


def test_controls_a_network_cannot_take_are_refused_in_one_line(
    tmp_path: Path, clip: Path, style_image: Path, tiny_network: Path, adain_network: Path
) -> None:
    mask = half_map(tmp_path / "m.png", 48, 64, 1.0, 0.0)
    black = gray_map(tmp_path / "black.png", torch.zeros(48, 64))
    per_style = ("task.method=fast", f"task.network={tiny_network}")
    for overrides, message, error in (
        (
            (*per_style, f"task.style={style_image}", f"task.style_masks=[{mask}]"),
            "per-style network .*style_masks",
            ConfigError,
        ),
        ((*per_style, f"task.style=[{style_image},{style_image}]"), "per-style network .*several styles", ConfigError),
        ((*per_style, "task.global_stats=true"), "per-style network .*global_stats", ConfigError),
        (
            ("task.method=fast", f"task.network={adain_network}", "task.global_stats=true"),
            "give task.style",
            ConfigError,
        ),
        (
            (f"task.style_masks=[{black}]", "task.max_frames=1"),
            "task.style_masks leave 100.0% of the image uncovered",
            ImageError,
        ),
    ):
        style = None if "task.method=fast" in overrides else style_image
        with pytest.raises(error, match=message) as info:
            main.run_task(video_cfg(clip, style, *overrides), tmp_path / "run")
        assert "\n" not in str(info.value)


def test_sanet_refuses_global_stats_in_one_line(tmp_path: Path, clip: Path, style_image: Path) -> None:
    from transferlab.fast.arbitrary.networks import AdaINNet

    spec = {**ADAIN, "arch": "sanet", "encoder": "vgg19", "width": 1.0}
    state = {f"net.{k}": v for k, v in AdaINNet(**spec, loss_net=False).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, tmp_path / "sanet.ckpt")
    cfg = video_cfg(clip, style_image, *FAST, f"task.network={tmp_path / 'sanet.ckpt'}", "task.global_stats=true")
    with pytest.raises(ConfigError, match="SANet network, which normalizes") as info:
        main.run_task(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)


def test_optimization_places_two_styles_by_masks(tmp_path: Path, clip: Path, style_image: Path) -> None:
    other = make_image(tmp_path / "other.png", (40, 40), seed=9)
    masks = half_map(tmp_path / "ma.png", 48, 64, 1.0, 0.0), half_map(tmp_path / "mb.png", 48, 64, 0.0, 1.0)
    frames = run_video(
        tmp_path,
        clip,
        None,
        f"task.style=[{style_image},{other}]",
        f"task.style_masks=[{masks[0]},{masks[1]}]",
        "task.map_motion=flow",
        "task.max_frames=2",
        "task.baseline=false",
    )
    assert len(frames) == 2 and all(torch.isfinite(f).all() for f in frames)


def test_blending_after_the_controls_still_lowers_the_flicker(tmp_path: Path, tiny_network: Path) -> None:
    """Colour fitted and saliency recomputed per frame, then the temporal blend on the final pixels."""
    clip = write_clip(tmp_path / "square.mp4", square_frames(n=4))
    out = tmp_path / "run"
    controls_on = ("task.strength_map=auto", "task.color=histogram", "task.blend=0.6")
    main.run_task(video_cfg(clip, None, "task.method=fast", f"task.network={tiny_network}", *controls_on), out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["flicker"] < 0.5 * metrics["flicker_baseline"]


def test_a_resumed_run_moves_its_maps_through_the_finished_frames(
    tmp_path: Path, clip: Path, tiny_network: Path
) -> None:
    half = half_map(tmp_path / "half.png", 48, 64, left=0.0, right=1.0)
    cfg = video_cfg(
        clip, None, *FAST, f"task.network={tiny_network}", f"task.strength_map={half}", "task.map_motion=flow"
    )
    out = tmp_path / "run"
    main.run_task(cfg, out)
    last = (out / "frames" / "frame_000002.png").read_bytes()
    progress = json.loads((out / "progress.json").read_text())
    progress["done"] = 2  # as if killed before the last frame
    (out / "progress.json").write_text(json.dumps(progress))
    (out / "frames" / "frame_000002.png").unlink()
    main.run_task(cfg, out)
    assert (out / "frames" / "frame_000002.png").read_bytes() == last


def test_style_weights_blend_styles_with_an_adain_network(tmp_path: Path, clip: Path, adain_network: Path) -> None:
    """Weights [1, 0]: the first style alone (Huang & Belongie's interpolation, as apply_adain blends)."""
    a, b = two_styles(tmp_path)
    common = (*FAST, f"task.network={adain_network}", "task.blend=0")
    weighted = run_video(tmp_path, clip, None, *common, f"task.style=[{a},{b}]", "task.style_weights=[1,0]")
    alone = {k: run_video(tmp_path, clip, p, *common, name=k) for k, p in (("a", a), ("b", b))}
    assert all((w - s).abs().max() <= 1 / 255 + 1e-6 for w, s in zip(weighted, alone["a"]))
    assert (alone["a"][0] - alone["b"][0]).abs().mean() > 0.01


def test_blending_the_final_pixels_flickers_less_than_blending_before_the_strength() -> None:
    """The order chosen (stylize, strength, then blend, weighted by the strength) against blending the network's
    output before the strength lerp, with a flickering stylizer and auto strength on a panning clip."""
    from transferlab import saliency
    from transferlab.motion import warp
    from transferlab.video.flow import OpenCVFlow, consistency_mask, warping_error
    from transferlab.video.temporal import BlendedFrames

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Sigmoid())
    noisy = lambda x: net((x + 0.2 * torch.randn_like(x)).unsqueeze(0))[0].detach()  # noqa: E731
    frames, flow, blend = pan_frames(n=6, h=96, w=128), OpenCVFlow(), 0.5
    chosen = BlendedFrames(lambda frame, maps: torch.lerp(frame, noisy(frame), maps.strength), blend)
    errors = {"chosen": [0.0, 0.0], "before": [0.0, 0.0]}
    prev: dict[str, torch.Tensor] = {}
    for i, frame in enumerate(frames):
        maps = controls.Maps(None, saliency.auto_strength(frame.unsqueeze(0))[0])
        if i == 0:
            out = {"chosen": chosen(frame, None, maps)[0]}
            stylized = noisy(frame)
            out["before"] = torch.lerp(frame, stylized, maps.strength)
        else:
            backward = flow(frame, frames[i - 1])
            mask = consistency_mask(backward, flow(frames[i - 1], frame))
            temporal = controls.styled_only((warp(prev["chosen"], backward), mask), maps)
            out = {"chosen": chosen(frame, temporal, maps)[0]}
            stylized = BlendedFrames(noisy, blend)(frame, (warp(stylized, backward), mask))[0]
            out["before"] = torch.lerp(frame, stylized, maps.strength)
            for k in errors:
                e = warping_error(out[k], prev[k], backward, mask)
                errors[k] = [errors[k][0] + e[0], errors[k][1] + e[1]]
        prev = out
    assert errors["chosen"][0] < 0.9 * errors["before"][0]  # measured 0.82 (8 frames at 96x128: 0.72)


def test_a_missing_mask_and_a_pipe_as_strength_map_are_reported_with_the_style(tmp_path: Path, clip: Path) -> None:
    import os

    pipe = tmp_path / "map.png"
    os.mkfifo(pipe)
    overrides = (f"task.style_masks=[{tmp_path / 'no_mask.png'}]", f"task.strength_map={pipe}")
    with pytest.raises(TransferLabError) as info:
        VideoSettings.from_cfg(video_cfg(clip, tmp_path / "no_style.png", *overrides))
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and "no_style.png does not exist (task.style)" in lines[0]
    assert "no_mask.png does not exist (task.style_masks[0])" in lines[1]
    assert lines[2].startswith(f"task.strength_map='{pipe}' is not a file")
