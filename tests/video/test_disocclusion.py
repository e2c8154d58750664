"""What the flicker metric skips: the strip a pan uncovers is stylized anew (not a smear of the edge
column the warp replicates), and metrics.json reports the skipped pixels, sharpness and loss terms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.video.conftest import pan_frames, write_clip
from tests.video.test_video_task import video_cfg
from transferlab import images, main
from transferlab.errors import ConfigError
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.video import task
from transferlab.video.settings import VideoSettings
from transferlab.video.temporal import initial_image

SHIFT = 4  # px a frame: frame t + 1 shows frame t moved right, and a strip this wide new at the left edge
FIGURES = ("skipped_share", "skipped_ssim", "sharpness", "sharpness_baseline")
TERMS = ("content_loss", "style_loss", "content_loss_baseline", "style_loss_baseline")


def strip_texture(run: Path, folder: str, i: int) -> float:
    """The variance along the rows of the uncovered strip and the first column past it: about 0 when the
    strip repeats that column (the warp of a pan replicates the border there)."""
    frame = images.load_image(run / folder / task.frame_name(i))
    return float(frame[:, :, : SHIFT + 1].var(dim=2).mean())


@pytest.fixture
def wide_pan(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "pan.mp4", pan_frames(n=3, shift=SHIFT))


@pytest.mark.parametrize("baseline", [True, False])
def test_the_uncovered_strip_is_stylized_anew_by_the_optimization(
    tmp_path: Path, wide_pan: Path, style_image: Path, baseline: bool
) -> None:
    """From the independent result (with task.baseline) or the content: before, the strip started as the
    edge column repeated and kept a row variance of 4e-6 against the independent frames' 8e-3."""
    out = tmp_path / "run"
    main.run_task(
        video_cfg(wide_pan, style_image, "task.first_steps=6", "task.steps=3", f"task.baseline={baseline}"), out
    )
    for i in (1, 2):
        reference = strip_texture(out, "baseline", i) if baseline else strip_texture(out, "frames", 0)
        assert strip_texture(out, "frames", i) > 0.3 * reference
    metrics = json.loads((out / "metrics.json").read_text())
    if not baseline:
        assert all(math.isfinite(metrics[k]) for k in ("skipped_share", "sharpness", "content_loss", "style_loss"))
        return
    assert all(math.isfinite(metrics[k]) for k in (*FIGURES, *TERMS))
    assert 0 < metrics["skipped_share"] < 0.5 and -1 <= metrics["skipped_ssim"] <= 1


def test_the_uncovered_strip_is_the_networks_output_with_blending(
    tmp_path: Path, wide_pan: Path, tiny_network: Path
) -> None:
    """Where the flow leaves the frame the consistency mask is 0, so the blend takes the network's own output."""
    out = tmp_path / "run"
    main.run_task(video_cfg(wide_pan, None, "task.method=fast", f"task.network={tiny_network}", "task.blend=0.6"), out)
    for i in (1, 2):
        video, own = (images.load_image(out / d / task.frame_name(i))[:, :, :SHIFT] for d in ("frames", "baseline"))
        assert torch.allclose(video, own, atol=1.5 / 255)
        assert strip_texture(out, "frames", i) > 0.5 * strip_texture(out, "baseline", i) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(metrics[k]) for k in FIGURES)
    assert not any(k in metrics for k in TERMS)  # a per-style network has no style image to compare with


def test_the_optimization_starts_anew_where_no_earlier_frame_is_reliable() -> None:
    frame, warped = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    mask = torch.zeros(1, 8, 8)
    mask[:, :, 2:] = 1
    init = initial_image(frame, (warped * mask, mask))  # combine's target: 0 where no frame is reliable
    assert torch.equal(init[:, :, :2], frame[:, :, :2]) and torch.equal(init[:, :, 2:], warped[:, :, 2:])
    assert initial_image(frame, None) is frame
    independent = torch.rand(3, 8, 8)  # with task.baseline, the frame stylized on its own
    assert torch.equal(initial_image(frame, (warped * mask, mask), independent)[:, :, :2], independent[:, :, :2])


def test_loss_terms_need_a_style_image(tmp_path: Path, wide_pan: Path, tiny_network: Path) -> None:
    fast = ("task.method=fast", f"task.network={tiny_network}")
    with pytest.raises(ConfigError, match="task.loss_terms=true needs task.style"):
        VideoSettings.from_cfg(video_cfg(wide_pan, None, *fast, "task.loss_terms=true"))
    with pytest.raises(ConfigError, match="task.loss_terms='sometimes' is invalid"):
        VideoSettings.from_cfg(video_cfg(wide_pan, None, *fast, "task.loss_terms=sometimes"))
    assert not VideoSettings.from_cfg(video_cfg(wide_pan, None, *fast)).loss_terms


def test_an_arbitrary_style_network_reports_the_loss_terms_it_pays(
    tmp_path: Path, wide_pan: Path, style_image: Path
) -> None:
    """task.loss_terms=true with AdaIN: the content and style terms of the blended and the independent frames."""
    torch.manual_seed(0)
    spec = {"arch": "adain", "weights": None, "normalization": "imagenet", "pooling": "max"}
    spec |= {"style_layers": {"relu1_1": 1.0}, "encoder": "light", "width": 0.125}
    state = {f"net.{k}": v for k, v in AdaINNet(**spec, loss_net=False).state_dict().items()}
    network = tmp_path / "adain.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec, "loss_weights": [1.0, 10.0, 1.0]}}, network)
    out = tmp_path / "run"
    fast = ("task.method=fast", f"task.network={network}", "task.loss_terms=true", "task.max_frames=2")
    main.run_task(video_cfg(wide_pan, style_image, *fast), out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(metrics[k]) and metrics[k] >= 0 for k in (*FIGURES, *TERMS))
