"""Style from words, its cost (issue 25): time per stylize step (loss, gradient, Adam step) at one size with
a prompt through a random-init open_clip model (text.weights=null, built from open_clip's shipped config: no
download) beside the VGG-only step of an image style, both through the task's own module (``style.task.build``).
The text step runs VGG once (to the content layer) and CLIP once on the whole view plus ``--crops`` crops.

Random weights: the figures are costs, not results (a random CLIP's "style" means nothing).

    python scripts/benchmark_text.py [--size 256] [--steps 2] [--model ViT-B-32] [--crops 64 16] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from bench.common import ROOT, add_warnings_switch, machine, quiet
from transferlab import images
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings


def step_seconds(overrides: list[str], steps: int) -> float:
    """Median seconds of a step (after one warm-up) of the stylize module composed from ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    module.on_fit_start()
    optimizer = torch.optim.Adam([module.image], lr=0.01)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        module.losses()["loss/total"].backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--crops", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: its own)")
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "content.png"
        torch.manual_seed(0)
        images.save_image(torch.rand(3, args.size * 3 // 4, args.size), photo)
        common = ["model.weights=null", f"task.content={photo}", f"task.size={args.size}", "optimizer=adam"]
        common += ["trainer.accelerator=cpu", "task.image_every=0"]
        vgg = step_seconds([*common, f"task.style={photo}"], args.steps)
        print(f"VGG-only style step (Gatys layers, an image style) at {args.size} px: {vgg:.2f} s")
        for crops in args.crops:
            text = [f"text.model={args.model}", "text.weights=null", "task.style_text='an oil painting'"]
            seconds = step_seconds([*common, *text, f"loss.text_crops={crops}"], args.steps)
            print(
                f"text step ({args.model}, random init, whole view + {crops} crops of 128 px, VGG to relu4_2) "
                f"at {args.size} px: {seconds:.2f} s ({seconds / vgg:.1f}x)"
            )
