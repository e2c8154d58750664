"""Issue 26 item 5: stylize's loss network beyond VGG. Time per evaluation (the loss forward and backward, as the
L-BFGS closure runs it) and peak memory of ResNet-50 with and without Wang et al.'s softmax transformation,
beside VGG19, each in a fresh process."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import ALL_ON, load, machine, median_time, reset_peak, rss_mib
from bench.stylize.runs import build, evaluation, make_cfg, run_child, style_hw
from transferlab import memory, runtime
from transferlab.style.settings import StyleSettings

HELP = "s/evaluation and peak memory of ResNet-50 (with and without the softmax transform) beside VGG19"
# (model, feature transform): each network with its default loss layers (VGG19: layers=gatys; others: model.layers).
NETWORKS = (("vgg19", "none"), ("resnet50", "none"), ("resnet50", "softmax"), ("vgg19", "softmax"))


def backbones_child(size: int, model: str, transform: str, repeats: int) -> dict[str, Any]:
    """One network at ``size``: door and build time, the median s/evaluation, the live tensors one evaluation
    creates (``memory.peak_bytes``: what a GPU's allocator would hold), the process's peak resident memory over
    the build and evaluations (less its memory after imports), and the estimate the run would log."""
    rss0 = rss_mib()
    cfg = make_cfg(size, "gatys", f"model={model}", f"model.feature_transform={transform}")
    reset_peak()
    start = time.perf_counter()
    settings = StyleSettings.from_cfg(cfg)
    door = time.perf_counter() - start
    module = build(cfg)
    built = time.perf_counter() - start - door
    runtime.configure(ALL_ON)  # as stylize.run does once the weights are loaded
    evaluate = evaluation(module)
    seconds = median_time(evaluate, repeats)
    live = memory.peak_bytes(lambda: evaluate(), grad=True)
    hw = tuple(module.image.shape[-2:])
    est = settings.memory.estimate(hw, style_hw(module))
    return {
        "size": list(hw),
        "door_s": door,
        "build_s": built,
        "seconds": seconds,
        "gflop": est.flops / 1e9,
        "live_mib": live / 2**20,
        "activations_mib": est.parts["activations"] / 2**20,
        "peak_mib": rss_mib("VmHWM") - rss0,
        "estimate_mib": est.peak_bytes / 2**20,
        "layers": [*settings.content_layers, *settings.style_layers],
    }


def backbones(args: argparse.Namespace) -> None:
    print(f"== stylize's loss network: VGG19 and ResNet-50 (random weights), fp32, batch 1\nmachine: {machine()}")
    print(
        "s/eval: median of one evaluation (loss forward + backward to the image, as the L-BFGS closure runs it); "
        "live: tensors one evaluation creates (dispatch-level count); est act: the estimate's activations; "
        "process: peak resident memory of build + evaluations less that after imports; estimate: the run's logged "
        "peak (L-BFGS, history 100)"
    )
    print(
        f"{'size':>9} {'network':>18} {'s/eval':>7} {'GFLOP':>6} {'live MiB':>8} {'est act':>7} "
        f"{'process MiB':>11} {'estimate':>8} {'door s':>6} {'build s':>7}  layers"
    )
    for size in args.sizes:
        for model, transform in NETWORKS:
            r = run_child("backbones", size=size, model=model, transform=transform, repeats=args.repeats)
            name = model if transform == "none" else f"{model}+softmax"
            print(
                f"{r['size'][0]:>4}x{r['size'][1]:<4} {name:>18} {r['seconds']:7.2f} {r['gflop']:6.0f} "
                f"{r['live_mib']:8.0f} {r['activations_mib']:7.0f} {r['peak_mib']:11.0f} {r['estimate_mib']:8.0f} "
                f"{r['door_s']:6.1f} {r['build_s']:7.1f}  {','.join(r['layers'])}",
                flush=True,
            )
    print(f"load average at the end: {load()}")


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[512])
    p.add_argument("--repeats", type=int, default=5, help="timed evaluations after one warm-up")
    p.set_defaults(run=backbones)
