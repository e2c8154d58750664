"""Item 5: bf16-mixed against fp32, where bf16 is native (CUDA, or a CPU with AVX512_BF16 or AMX): the time
per evaluation, and the time each takes to reach the loss fp32 reaches in a fixed evaluation budget (bf16's
image judged by its loss in fp32)."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from bench.common import ALL_ON, machine
from bench.stylize.quality import balanced_weights
from bench.stylize.runs import Trace, build, fit, make_cfg
from transferlab import runtime
from transferlab.conv_choice import native_bf16
from transferlab.style.module import StyleTransfer

PRECISIONS = ("32", "bf16-mixed")


class Fp32Loss(pl.Callback):
    """After every step: the loss of the image as fp32 computes it, with the seconds and evaluations since the
    fit began (this callback's own time taken off the clock); stops the fit at ``target``. bf16-mixed's own
    loss carries its features' rounding: it stalls above the loss of the image it has made."""

    def __init__(self, target: float) -> None:
        self.target, self.spent, self.start = target, 0.0, time.perf_counter()
        self.points: list[tuple[float, int, float, int]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, module: StyleTransfer, *args: Any) -> None:
        now = time.perf_counter()
        with torch.no_grad(), torch.autocast(module.image.device.type, enabled=False):
            loss = float(module.losses()["loss/total"])
        self.points.append((now - self.start - self.spent, module.evaluations, loss, module.scale))
        self.spent += time.perf_counter() - now
        if loss <= self.target:
            trainer.should_stop = True


def bf16_run(cfg: DictConfig, target: float, evals: int) -> tuple[Fp32Loss, list[str]]:
    """bf16-mixed until its image's fp32 loss reaches ``target``, or ``evals`` evaluations; where it converged."""
    module = build(cfg, targets=False)
    fp32_loss = Fp32Loss(target)
    module.configure_callbacks = lambda: [fp32_loss]  # Lightning adds a module's own callbacks to the fit's
    fit(module, None, evals, precision="bf16-mixed")
    return fp32_loss, [c.describe() for c in module.converged]


def per_evaluation(trace: Trace | Fp32Loss) -> float:
    """Seconds per evaluation after the first step (which holds the fit's setup and the targets)."""
    (t0, e0, *_), (t1, e1, *_) = trace.points[0], trace.points[-1]
    return (t1 - t0) / max(1, e1 - e0)


def reached(trace: Trace | Fp32Loss, loss: float) -> tuple[float, int] | None:
    """Seconds since the fit began and evaluations when ``trace`` first reached ``loss``."""
    return next(((t, e) for t, e, value, _ in trace.points if value <= loss), None)


def loss_at(trace: Trace | Fp32Loss, seconds: float) -> float:
    """The loss ``trace`` had reached ``seconds`` after the fit began."""
    return min([value for t, _, value, _ in trace.points if t <= seconds] or [trace.points[0][2]])


def compare(size: int, args: argparse.Namespace) -> None:
    """fp32 for ``args.evals`` evaluations, then bf16-mixed until it reaches fp32's final loss (at most 3x the
    evaluations, or until L-BFGS converges), interleaved ``args.repeats`` times; medians."""
    # Loss weights that keep the loss far from L-BFGS's tolerances (random weights' losses are ~1e-5: it
    # would stop converged after a few evaluations); the evaluation budgets end the runs.
    cfg = make_cfg(size, args.layers, *balanced_weights(size, args.layers), f"task.steps={10 * args.evals}")
    for prec in PRECISIONS:  # per-layer convolution choices timed and cached, oneDNN's kernels made: untimed
        fit(build(cfg, targets=False), None, 10**6, max_steps=2, precision=prec)
    runs: dict[str, list[Trace | Fp32Loss]] = {prec: [] for prec in PRECISIONS}
    target, stops = None, []
    for _ in range(args.repeats):
        fp32 = fit(build(cfg, targets=False), None, args.evals, precision="32")
        target = fp32.points[-1][2] if target is None else target  # the same every repeat: same seed, same steps
        runs["32"].append(fp32)
        bf16, stops = bf16_run(cfg, target, 3 * args.evals)
        runs["bf16-mixed"].append(bf16)
    speed = {prec: statistics.median(per_evaluation(t) for t in traces) for prec, traces in runs.items()}
    t32 = statistics.median(reached(t, target)[0] for t in runs["32"])
    evals = runs["32"][0].points[-1][1]
    print(f"{size} px: fp32 {speed['32']:.3f} s/eval, loss {target:.6g} after {evals} evaluations in {t32:.1f} s")
    print(
        f"{size} px: bf16-mixed {speed['bf16-mixed']:.3f} s/eval ({speed['32'] / speed['bf16-mixed']:.2f}x fp32's"
        f" speed); {reaching(runs, target, t32)}{''.join(f'; {c}' for c in stops)}"
    )


def reaching(runs: dict[str, list[Trace | Fp32Loss]], target: float, t32: float) -> str:
    """When bf16-mixed's image reached fp32's final loss ``target``, and fp32's loss at that time (or at its end)."""
    hits = [reached(t, target) for t in runs["bf16-mixed"]]
    if None in hits:
        end, *_ = runs["bf16-mixed"][0].points[-1:]
        behind = statistics.median(loss_at(t, end[0]) for t in runs["32"])
        return (
            f"MISSED fp32's loss: {end[2]:.6g} ({end[2] / target - 1:+.2%}) after {end[1]} evaluations in"
            f" {end[0]:.1f} s, when fp32 was at {behind:.6g}"
        )
    t16 = statistics.median(t for t, _ in hits)
    behind = statistics.median(loss_at(t, t16) for t in runs["32"])
    return (
        f"reached fp32's loss in {t16:.1f} s ({t32 / t16:.2f}x sooner) after {hits[0][1]} evaluations, when fp32"
        f" was at {behind:.6g} ({behind / target - 1:+.2%})"
    )


def precision(args: argparse.Namespace) -> None:
    runtime.configure(ALL_ON)
    print(
        f"== bf16-mixed against fp32, layers={args.layers}, {args.evals} evaluations of fp32, median of "
        f"{args.repeats}\nmachine: {machine()}"
    )
    if not (torch.cuda.is_available() or native_bf16() or args.force):
        print(
            f"skipped: no CUDA device, and this CPU has no native bf16 (AVX512_BF16 or AMX; capability "
            f"{torch.backends.cpu.get_cpu_capability()}): bf16 would run on emulated paths, slower than fp32"
        )
        return
    for size in args.sizes:
        compare(size, args)


HELP = "bf16-mixed vs fp32: s/evaluation and time to fp32's loss (CUDA, or a CPU with AVX512_BF16 or AMX)"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--layers", default="seed")
    p.add_argument("--evals", type=int, default=40, help="fp32's evaluation budget, whose final loss bf16 must reach")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--force", action="store_true", help="run even without native bf16 (a functional check)")
    p.set_defaults(run=precision)
