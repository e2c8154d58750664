"""Video style transfer on this machine: seconds per frame at each size for the optimization method
(Gatys per frame from the warped previous result + temporal loss, few steps) and the fast method (a
per-style network per frame + flow-warped blending), the share of each frame's time spent in optical
flow, and the flicker (mean squared warping error over the reliable pixels) with the temporal terms
next to independent per-frame stylization of the same frames.

The clip is synthetic: a textured square moving over a panning textured background. Random weights
everywhere (model.weights=null, an untrained network): speed does not depend on them, the flicker
figures do (and on the steps: unconverged frames keep moving). Runs go through the task itself
(task=video, in process); each frame's time leaves out the independent baseline's, given apart.

    python scripts/benchmark_video.py [--sizes 256 512] [--frames 4] [--first-steps 10] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from bench.common import ROOT, add_warnings_switch, quiet
from transferlab import images
from transferlab import main as tasks
from transferlab.fast.per_style.networks import build_network
from transferlab.video import io

SHALLOW = ["~layers.content", "+layers.content={relu2_1: 1}", "~layers.style", "+layers.style={relu1_1: 1, relu2_1: 1}"]


def texture(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return torch.nn.functional.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def clip_frames(size: int, n: int):
    """``n`` frames ``size`` wide (4:3): the background pans by size/128 px a frame, a square crosses it at size/32."""
    h, w, pan, step = size * 3 // 4, size, max(1, size // 128), max(2, size // 32)
    background, square = texture(h, w + pan * n, 1), texture(h // 3, h // 3, 2) * 0.5 + 0.5
    for t in range(n):
        frame = background[:, :, (n - t) * pan : (n - t) * pan + w].clone()
        x, y = w // 8 + t * step, h // 3
        frame[:, y : y + h // 3, x : x + h // 3] = square
        yield frame


def tiny_checkpoint(path: Path, arch: str, width: float) -> Path:
    """An untrained network saved as train_fast saves it."""
    spec = {"arch": arch, "width": width, "blocks": 5}
    state = {f"network.{k}": v for k, v in build_network(**spec).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, path)
    return path


def run(tmp: Path, name: str, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["task=video", "model.weights=null", "trainer.accelerator=cpu", *overrides])
    out = tmp / name
    tasks.run_task(cfg, out)
    return json.loads((out / "metrics.json").read_text())


def row(label: str, m: dict) -> str:
    base = m.get("flicker_baseline")
    ratio = f"{base / m['flicker']:.1f}x" if base and m["flicker"] else "-"
    extra = f", independent {m['baseline_seconds_per_frame']:.2f} s" if m["method"] == "optimize" else ""
    return (
        f"{label:38s} {m['seconds_per_frame']:7.3f} s/frame ({1 / m['seconds_per_frame']:6.1f} fps){extra}; "
        f"flow {m['flow_share']:5.1%}; flicker {m['flicker']:.3g} vs independent "
        f"{base if base is None else f'{base:.3g}'} ({ratio} lower)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--first-steps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(
        f"{args.frames} frames; optimize: L-BFGS, {args.first_steps} steps on the first frame (and on each "
        f"independent frame), {args.steps} after; fast: untrained networks; DIS flow; random weights"
    )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        style = images.save_image(texture(128, 128, 3), tmp / "style.png")
        nets = {f"{a} w={w}": tiny_checkpoint(tmp / f"{a}.ckpt", a, w) for a, w in (("johnson", 1.0), ("light", 0.5))}
        for size in args.sizes:
            clip = tmp / f"clip{size}.mp4"
            io.write_video(clip_frames(size, args.frames), clip, 10)
            common = [f"task.input={clip}", f"task.max_frames={args.frames}"]
            steps = [f"task.style={style}", f"task.first_steps={args.first_steps}", f"task.steps={args.steps}"]
            print(f"--- {size} px")
            for label, layers in (("optimize, Gatys layers (to relu5_1)", []), ("optimize, relu1_1-relu2_1", SHALLOW)):
                print(row(label, run(tmp, f"opt{size}{len(layers)}", *common, *steps, *layers)), flush=True)
            for label, path in nets.items():
                m = run(tmp, f"fast{size}{label}", *common, "task.method=fast", f"task.network={path}")
                print(row(f"fast, {label}, blend 0.5", m), flush=True)
