"""Flow against known motion, the consistency mask, warping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.video.conftest import pan_frames, square_frames, textured, write_clip
from tests.video.test_video_task import video_cfg
from transferlab import main
from transferlab.motion import warp
from transferlab.video.flow import OpenCVFlow, consistency_mask


@pytest.mark.parametrize("method", ["dis", "dis_fast", "farneback"])
def test_flow_recovers_a_known_pan(method: str) -> None:
    prev, cur = pan_frames(n=2, shift=3)[:2]
    backward = OpenCVFlow(method)(cur, prev)  # cur at x is prev at x - 3
    inner = backward[:, 8:-8, 8:-8]
    assert (inner[0] + 3).abs().mean() < 0.5
    assert inner[1].abs().mean() < 0.5


def test_warp_by_an_integer_shift_is_the_shift() -> None:
    image = torch.rand(3, 16, 20)
    flow = torch.zeros(2, 16, 20)
    flow[0] = -2
    assert torch.allclose(warp(image, flow)[:, :, 2:], image[:, :, :-2], atol=1e-5)


def test_mask_marks_the_disoccluded_region() -> None:
    """A square moving right over a static background uncovers the strip it leaves."""
    background = textured(48, 64, seed=1)
    square = textured(16, 16, seed=2) * 0.3 + 0.7
    prev, cur = background.clone(), background.clone()
    prev[:, 16:32, 16:32] = square
    cur[:, 16:32, 22:38] = square
    flow = OpenCVFlow("dis")
    mask = consistency_mask(flow(cur, prev), flow(prev, cur))[0]
    uncovered = mask[18:30, 17:21].mean()  # in prev behind the square's old place, in cur background seen anew
    static = mask[36:46, 40:60].mean()
    assert uncovered < 0.5 < static


def test_flow_at_a_reduced_size_is_close_to_the_full_size_flow() -> None:
    """``task.flow_size``: computed at half the long side, the field resized and its vectors doubled."""
    prev, cur = pan_frames(n=2, h=96, w=128, shift=4)[:2]
    full = OpenCVFlow("dis")(cur, prev)[:, 12:-12, 12:-12]
    half = OpenCVFlow("dis", size=64)(cur, prev)[:, 12:-12, 12:-12]
    assert half.shape == full.shape
    assert (half - full).abs().mean() < 0.1
    assert (half[0] + 4).abs().mean() < 0.1  # the pan, in full-size pixels


def test_fast_method_runs_with_a_reduced_flow_size(tmp_path: Path, tiny_network: Path) -> None:
    clip = write_clip(tmp_path / "square.mp4", square_frames(n=3))
    fast = ("task.method=fast", f"task.network={tiny_network}", "task.flow_size=32", "task.blend=0.6")
    main.run_task(video_cfg(clip, None, *fast), tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["flicker"] < metrics["flicker_baseline"]
    shares = (metrics["flow_share"], metrics["stylizer_share"])
    assert min(shares) > 0 and sum(shares) < 1  # the rest: warping, blending, writing the frames
