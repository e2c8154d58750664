"""Arbitrary-style video on this machine (issue 24 item 3): an AdaIN network per frame, with flow-warped
blending, with the clip's content statistics (``task.global_stats``), and both; seconds per frame and the
flicker next to independent frames, on bench.video's synthetic clip (a square crossing a panning
background) and on a static clip (one frame repeated), where global statistics must give zero flicker.

Random weights (an untrained network with a light encoder, or VGG19's layers with ``--encoder vgg19``, He-
initialized so that the output follows the frame): speed does not depend on them; the flicker figures do
(compare rows, not with a trained network's).

    python scripts/benchmark_video_adain.py [--sizes 256 512] [--frames 6] [--encoder light]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from bench.common import add_warnings_switch, quiet
from bench.video import clip_frames, row, run, texture
from transferlab import images
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.video import io

ROWS = {
    "per frame": ["task.blend=0"],
    "blend 0.5": ["task.blend=0.5"],
    "global stats": ["task.blend=0", "task.global_stats=true"],
    "global stats + blend 0.5": ["task.blend=0.5", "task.global_stats=true"],
}


def adain_checkpoint(path: Path, encoder: str) -> Path:
    """An untrained AdaIN network saved as train_adain saves it (without a light encoder's teacher), its
    convolutions He-initialized (zero bias) but the decoder's last: with PyTorch's default init its output
    is flat whatever the frame, and every flicker figure would be about nothing."""
    spec = {
        "arch": "adain",
        "weights": None,
        "normalization": "imagenet",
        "pooling": "max",
        "style_layers": {"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0},
        "encoder": encoder,
        "width": 0.5 if encoder == "light" else 1.0,
    }
    net = AdaINNet(**spec, loss_net=False)
    with torch.no_grad():
        for conv in [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][:-1]:
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            conv.bias.zero_()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--encoder", choices=["light", "vgg19"], default="light")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"{args.frames} frames; untrained AdaIN network ({args.encoder} encoder); DIS flow; random weights")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        style = images.save_image(texture(128, 128, 3), tmp / "style.png")
        net = adain_checkpoint(tmp / "adain.ckpt", args.encoder)
        for size in args.sizes:
            moving, static = tmp / f"clip{size}.mp4", tmp / f"static{size}"
            io.write_video(clip_frames(size, args.frames), moving, 10)
            first = next(clip_frames(size, 1))
            for i in range(args.frames):  # lossless frames: a static clip's frames are exactly equal
                images.save_image(first, static / f"frame_{i}.png")
            for clip_name, clip in (("moving", moving), ("static", static)):
                print(f"--- {size} px, {clip_name} clip")
                common = [f"task.input={clip}", "task.method=fast", f"task.network={net}", f"task.style={style}"]
                for label, overrides in ROWS.items():
                    m = run(tmp, f"{clip_name}{size}{label}", *common, *overrides)
                    print(row(f"adain, {label}", m), flush=True)
