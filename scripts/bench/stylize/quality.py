"""Item 3: time to quality, single-scale against coarse-to-fine schedules, at equal loss weights."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from typing import Any

import torch

from bench.common import ALL_ON, RESULTS, machine
from bench.stylize.runs import build, fit, layer_sets, make_cfg, weights
from transferlab import runtime
from transferlab.style import estimate


def balanced_weights(size: int, layers: str) -> list[str]:
    """Config overrides that give every style layer its say with random VGG weights, whose
    activations shrink with depth (relu5_1's Gram matrix is ~1e6 times smaller than relu1_1's):
    each layer's style loss is divided by the mean square of its target Gram matrix (a relative
    error, as activation scales are for a trained VGG), the style weight makes the loss of the
    content image 1e3, and the content weight makes a noise image cost as much in content."""
    module = build(make_cfg(size, layers))
    with torch.no_grad():
        scale = {ly: float(module.perceptual.gram(0, ly).pow(2).mean()) for ly in module.perceptual.style_layers}
        overrides = [f"layers.style.{ly}={1 / v:.6g}" for ly, v in scale.items()]
        module = build(make_cfg(size, layers, *overrides))
        style = float(module.losses()["loss/style"]) / module.perceptual.style_weight
        module.image.copy_(torch.rand_like(module.image))
        content = float(module.losses()["loss/content"]) / module.perceptual.content_weight
    return overrides + [f"loss.style_weight={1e3 / style:.6g}", f"loss.content_weight={1e3 / content:.6g}"]


def schedule(
    stages: list[tuple[int, int]], layers: str, history: int, target: float | None, weights: list[str]
) -> dict[str, Any]:
    """A run of the project's coarse-to-fine optimization (``task.scales``): ``stages`` is
    ``[(size, steps), ..., (output size, evaluations)]``; the last scale runs until ``target``
    (or its evaluation budget)."""
    *coarse, (size, evals) = stages
    cfg = make_cfg(
        size,
        layers,
        f"optimizer.history_size={history}",
        *weights,
        f"task.scales=[{','.join(str(s) for s, _ in coarse)}]",
        f"task.scale_steps=[{','.join(str(n) for _, n in coarse)}]",
        f"task.steps={10 * evals}",
    )
    start = time.perf_counter()
    module = build(cfg, targets=False)
    trace = fit(module, target, evals)
    seconds = time.perf_counter() - start
    content, style = layer_sets(cfg)
    log = []
    for scale in range(module.scale + 1):
        points = [p for p in trace.points if p[3] == scale]
        before = [p for p in trace.points if p[3] < scale]
        evaluations = points[-1][1] - (before[-1][1] if before else 0)
        hw = module.hw(scale)
        gflop = estimate.evaluation_flops(cfg.model.arch, content + style, style, *hw) / 1e9
        log.append(
            {
                "size": list(hw),
                "evaluations": evaluations,
                "loss": points[-1][2],
                "gflop": gflop * evaluations,
                "seconds": points[-1][0] - (before[-1][0] if before else 0),
                "trace": points,
            }
        )
    loss = trace.points[-1][2]
    terms = {k: float(v) for k, v in module.last_losses.items()}
    return {
        "stages": log,
        "seconds": seconds,
        "loss": loss,
        "terms": terms,
        "reached": target is None or loss <= target,
    }


def quality(args: argparse.Namespace) -> None:
    runtime.configure(ALL_ON)
    print(
        f"== time to quality at {args.size} px, layers={args.layers}, model.weights={weights()}\nmachine: {machine()}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    loss_weights = balanced_weights(args.size, args.layers)
    print("loss weights (balanced layers, fixed for every run):", " ".join(loss_weights))
    key = hashlib.sha256(" ".join([weights(), *loss_weights]).encode()).hexdigest()[:8]
    ref_file = RESULTS / f"single_{args.size}_{args.layers}_{args.evals}_{key}.json"
    if ref_file.exists():
        ref = json.loads(ref_file.read_text())
        print(f"single-scale reference read from {ref_file} (delete it to measure again)")
    else:
        ref = schedule([(args.size, args.evals)], args.layers, 100, None, loss_weights)
        ref["machine"] = machine()
        ref_file.write_text(json.dumps(ref))
    target = ref["loss"]
    report("single-scale", ref)
    for spec in args.schedules:
        *coarse, history = spec.split("/")
        stages = [tuple(map(int, s.split(":"))) for s in coarse] + [(args.size, args.evals)]
        result = schedule(stages, args.layers, int(history), target, loss_weights)
        report(f"{spec}", result, ref)


def report(name: str, result: dict[str, Any], ref: dict[str, Any] | None = None) -> None:
    stages = " -> ".join(f"{s['size'][1]}px {s['evaluations']} evals {s['seconds']:.0f}s" for s in result["stages"])
    gflop = sum(s["gflop"] for s in result["stages"])
    line = f"{name:>24}: loss {result['loss']:.5g} in {result['seconds']:.0f}s, {gflop / 1e3:.1f} TFLOP ({stages})"
    if ref is not None:
        ref_gflop = sum(s["gflop"] for s in ref["stages"])
        line += (
            f"; {'reached' if result['reached'] else 'MISSED'} the single-scale loss: time "
            f"{result['seconds'] / ref['seconds']:.2f}x, FLOPs {gflop / ref_gflop:.2f}x of single-scale"
        )
    print(line, flush=True)
    if "terms" in result:
        print(
            f"{'':26}final terms: "
            + ", ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in result["terms"].items() if k != "loss/total"),
            flush=True,
        )


HELP = "time to the single-scale loss: coarse-to-fine schedules"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--layers", default="gatys")
    p.add_argument("--evals", type=int, default=300, help="single-scale evaluations that set the target loss")
    p.add_argument(
        "--schedules",
        nargs="*",
        default=["128:150/256:60/100", "256:100/100"],
        help="coarse scales SIZE:STEPS separated by /, then the L-BFGS history size",
    )
    p.set_defaults(run=quality)
