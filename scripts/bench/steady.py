"""Networks trained to be steady (issue 24, figure a): a light per-style network trained with and without the
temporal term (``loss.temporal_weight``: synthetic shifts, zooms and rotations with exact flow, plus noise) at
equal steps, then applied to each frame on its own (``task=video task.method=fast task.blend=0``), so that the
flicker measured is the network's own. On two clips: the video benchmark's synthetic one (a textured square
over a panning texture) and one made by panning and zooming a shared photo. Per network and clip: the
flicker (mean squared warping error over the reliable pixels, DIS flow) and the loss terms of the stylized
frames (content and style, unweighted, against the input frames under the training's loss network); and, for
reference, the flicker of the input frames themselves (what a network that changes nothing would score).

Random weights everywhere (model.weights=null: the loss network VGG16 is random, so the style the networks
learn is a random network's texture statistics), a few hundred steps at most: the figures compare the
networks with one another, not with trained ones. Runs go through the tasks themselves, in process.

    python scripts/benchmark_steady.py [--steps 60] [--size 64] [--frames 6] [--weights 0 3 30]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from bench.common import ROOT, SHARED, add_warnings_switch, machine, quiet
from bench.video import clip_frames
from transferlab import images, motion
from transferlab import main as tasks
from transferlab.fast.per_style.train import perceptual_loss
from transferlab.fast.settings import TrainSettings
from transferlab.perceptual import PerceptualLoss
from transferlab.video.flow import OpenCVFlow, consistency_mask, warping_error


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=["model.weights=null", "trainer.accelerator=cpu", *overrides])


def pan_zoom_frames(photo: Path, size: int, n: int):
    """``n`` frames ``size`` wide (4:3) of ``photo``: the view pans by size/64 px and zooms in by 1% a frame
    (the exact motion of ``motion.affine_flow``), cut from the middle of a view 1.5x as large so that no
    frame shows the border."""
    big = images.load_image(photo, int(size * 1.5))
    h, w = size * 3 // 4, size
    top, left = (big.shape[1] - h) // 2, (big.shape[2] - w) // 2
    for t in range(n):
        shift = torch.tensor([[-t * size / 64, 0.0]])
        flow = motion.affine_flow(shift, torch.tensor([1 + 0.01 * t]), torch.zeros(1), *big.shape[1:])
        yield motion.warp(big, flow[0])[:, top : top + h, left : left + w].clamp(0, 1)


def run_task(cfg: DictConfig, out: Path, show: bool) -> None:
    """The task in this process; its progress bars (Lightning's go to stdout) kept off the figures unless ``show``."""
    with contextlib.nullcontext() if show else contextlib.redirect_stdout(io.StringIO()):
        tasks.run_task(cfg, out)


def train(out: Path, common: list[str], weight: float, show: bool) -> tuple[Path, float, dict]:
    """A train_fast run; its last checkpoint, seconds and final validation metrics."""
    cfg = compose_cfg(*common, f"loss.temporal_weight={weight}")
    start = time.perf_counter()
    run_task(cfg, out, show)
    return (
        out / "checkpoints" / "last.ckpt",
        time.perf_counter() - start,
        json.loads((out / "metrics.json").read_text()),
    )


def training_loss(common: list[str]) -> PerceptualLoss:
    """The loss network and style targets train_fast builds from the same settings and seed."""
    s = TrainSettings.from_cfg(compose_cfg(*common))
    pl.seed_everything(s.training.seed, verbose=False)
    return perceptual_loss(s)


def frame_terms(loss: PerceptualLoss, inputs: list[torch.Tensor], frames: Path) -> dict[str, float]:
    """Mean content and style terms (unweighted) of the stylized frames against the input frames."""
    totals = {"content": 0.0, "style": 0.0}
    with torch.no_grad():
        for i, content in enumerate(inputs):
            stylized = images.load_image(frames / f"frame_{i:06d}.png")
            parts = loss.parts(stylized.unsqueeze(0), content.unsqueeze(0))
            for key in totals:
                totals[key] += float(parts[key]) / len(inputs)
    return totals


def input_flicker(frames: list[torch.Tensor]) -> float:
    """The flicker of the unstylized frames, measured as the video task measures its output's (DIS flow of
    the input frames, consistency masks): what a network that changes nothing would score."""
    flow, sums = OpenCVFlow("dis"), [0.0, 0.0]
    for previous, current in zip(frames, frames[1:], strict=False):
        backward, forward = flow(current, previous), flow(previous, current)
        error, count = warping_error(current, previous, backward, consistency_mask(backward, forward))
        sums = [sums[0] + error, sums[1] + count]
    return sums[0] / sums[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps of each network")
    parser.add_argument("--size", type=int, default=64, help="training crops and clip width, pixels")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument(
        "--weights", type=float, nargs="+", default=[0.0, 3.0, 30.0], help="loss.temporal_weight of each network"
    )
    parser.add_argument("--photo", type=Path, default=SHARED / "content" / "tubingen.jpg")
    parser.add_argument("--photos", type=Path, default=SHARED / "hymenoptera" / "train", help="training photos")
    parser.add_argument("--style", type=Path, default=SHARED / "styles" / "starry_night.jpg")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    torch.set_num_threads(args.threads)
    print(machine())
    common = [
        "task=train_fast",
        "fastnet=light",
        f"data.root={args.photos}",
        f"data.crop={args.size}",
        f"data.val_size={args.size}",
        "data.val_count=4",
        "data.batch_size=2",
        "data.num_workers=0",
        f"task.style={args.style}",
        f"task.style_size={2 * args.size}",
        f"task.steps={args.steps}",
        f"task.val_every={args.steps}",
        "task.checkpoint_every=0",
        f"task.log_every={args.steps}",
    ]
    print(
        f"light network (fastnet=light), {args.steps} steps of 2 x {args.size} px crops, random VGG16 loss network; "
        f"loss.temporal_weight {args.weights} (default motion and noise); {args.frames} frames per clip, "
        "each stylized on its own (task.blend=0)"
    )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        clips = {
            "synthetic": list(clip_frames(args.size, args.frames)),
            f"pan+zoom {args.photo.name}": list(pan_zoom_frames(args.photo, args.size, args.frames)),
        }
        for i, frames in enumerate(clips.values()):  # PNG folders: the video task reads them losslessly
            for t, frame in enumerate(frames):
                images.save_image(frame, tmp / f"clip{i}" / f"{t:04d}.png")
        inputs = {
            label: [images.load_image(p) for p in sorted((tmp / f"clip{i}").glob("*.png"))]
            for i, label in enumerate(clips)
        }
        print(
            "input frames, unstylized: " + "; ".join(f"{k} flicker {input_flicker(v):.4g}" for k, v in inputs.items())
        )
        loss = training_loss(common)
        for weight in args.weights:
            label = f"temporal_weight={weight:g}"
            ckpt, seconds, val = train(tmp / f"w{weight:g}", common, weight, args.warnings)
            temporal = f", val/temporal {val['val/temporal']:.3g}" if "val/temporal" in val else ""
            print(
                f"--- {label}: trained in {seconds:.0f} s; val/content {val['val/content']:.3g}, "
                f"val/style {val['val/style']:.3g}{temporal}",
                flush=True,
            )
            for i, clip_label in enumerate(clips):
                out = tmp / f"w{weight:g}-video{i}"
                cfg = compose_cfg(
                    "task=video",
                    f"task.input={tmp / f'clip{i}'}",
                    "task.method=fast",
                    "task.blend=0",
                    "task.baseline=false",
                    f"task.network={ckpt}",
                )
                run_task(cfg, out, args.warnings)
                flicker = json.loads((out / "metrics.json").read_text())["flicker"]
                terms = frame_terms(loss, inputs[clip_label], out / "frames")
                print(
                    f"{clip_label:28s} flicker {flicker:.4g}; content {terms['content']:.4g}, style {terms['style']:.4g}",
                    flush=True,
                )
