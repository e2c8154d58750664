"""Issue 16 item 3: per-step overhead of the Lightning fit against a plain loop doing the same steps."""

from __future__ import annotations

import argparse
import tempfile
import time

from torch import Tensor

from bench.common import ALL_ON, load, machine
from bench.stylize.runs import build, fit, make_cfg
from transferlab import runtime
from transferlab.style.module import StyleTransfer
from transferlab.trainer import RunLogger


def plain_fit(module: StyleTransfer, steps: int) -> list[tuple[float, int]]:
    """The module's L-BFGS steps without Lightning: the same optimizer, losses and closure (``module.step``,
    as the video wing runs it), no loop, hooks or logging. Returns (seconds, evaluations) after every step."""
    module.on_fit_start()
    optimizer = module.configure_optimizers()
    start, points = time.perf_counter(), []
    for _ in range(steps):
        module.step(optimizer, Tensor.backward)
        float(module.last_losses["loss/total"])  # as the Trace callback reads the loss after each Lightning step
        points.append((time.perf_counter() - start, module.evaluations))
    return points


def overhead(args: argparse.Namespace) -> None:
    """Lightning fit (the module's training_step, its scalars written to TensorBoard every step) against a plain
    loop running the same steps (``module.step``: the same closure and evaluations), interleaved A, B, A, B in
    one process. Both sides take the same sequence of steps, so their step times compare like with like: the
    figure is the median step time over every step after the first of every round, which a descheduled thread
    in one step does not move (a mean over a run of 1.5 s moves by several percent)."""
    runtime.configure(ALL_ON)
    print(
        f"== per-step overhead: Lightning fit vs a plain PyTorch loop, L-BFGS, VGG19 {args.layers}"
        f"\nmachine: {machine()}"
    )
    print(
        f"{'size':>9} {'steps':>5} {'evals':>5} {'lightning ms/step':>17} {'plain ms/step':>13} {'ratio':>6}"
        f" {'difference':>10}  per-round ratio of mean step times"
    )
    for size in args.sizes:
        # About 1.5 s of evaluations per run at every size: a few ms per step resolve at small sizes.
        steps = args.evals or max(8, 40 * 64 // size)
        times: dict[str, list[float]] = {"lightning": [], "plain": []}
        means: dict[str, list[float]] = {"lightning": [], "plain": []}
        evaluations: dict[str, set[int]] = {"lightning": set(), "plain": set()}
        for _ in range(args.rounds):
            for name in ("lightning", "plain"):
                module = build(make_cfg(size, args.layers), targets=False)
                if name == "lightning":
                    with tempfile.TemporaryDirectory() as tmp:  # the run's TensorBoard logger, writing every step
                        tb = RunLogger(save_dir=tmp, name="tensorboard", version="", default_hp_metric=False)
                        points = [(p[0], p[1]) for p in fit(module, None, 10**6, max_steps=steps, logger=tb).points]
                else:
                    points = plain_fit(module, steps)
                durations = [b[0] - a[0] for a, b in zip(points, points[1:])]
                times[name] += durations
                means[name].append(sum(durations) / len(durations))
                evaluations[name].add(points[-1][1])
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        h, w = module.image.shape[-2:]
        same = "" if evaluations["lightning"] == evaluations["plain"] else f" (evaluations differ: {evaluations})"
        print(
            f"{h:>4}x{w:<4} {steps:>5} {min(evaluations['plain']):>5} {med['lightning'] * 1e3:17.2f}"
            f" {med['plain'] * 1e3:13.2f} {med['lightning'] / med['plain']:5.3f}x"
            f" {(med['lightning'] - med['plain']) * 1e3:+8.2f}ms  "
            + " ".join(f"{a / b:.3f}" for a, b in zip(means["lightning"], means["plain"]))
            + f"; load {load()}{same}",
            flush=True,
        )


HELP = "Lightning fit vs a plain loop doing the same evaluations (issue 16)"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--evals", type=int, default=None, help="L-BFGS steps per run (default: 40 at 64 px, fewer above)")
    p.add_argument("--rounds", type=int, default=5)
    p.set_defaults(run=overhead)
