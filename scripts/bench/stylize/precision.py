"""Item 5: bf16-mixed against fp32 (CUDA, or a CPU with AMX)."""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import ALL_ON, machine
from bench.stylize.runs import build, fit, make_cfg
from transferlab import runtime


def precision(args: argparse.Namespace) -> None:
    runtime.configure(ALL_ON)
    print(f"== bf16-mixed against fp32\nmachine: {machine()}")
    amx = "AMX" in torch.backends.cpu.get_cpu_capability()
    if not (torch.cuda.is_available() or amx or args.force):
        print(
            "skipped: no CUDA device and no AMX on this CPU (capability "
            f"{torch.backends.cpu.get_cpu_capability()}); bf16 would run on emulated paths, slower than fp32"
        )
        return
    results = {}
    for prec in ("32", "bf16-mixed"):
        module = build(make_cfg(args.size, args.layers), targets=False)
        start = time.perf_counter()
        fit(module, None, 10**6, max_steps=args.steps, precision=prec)
        results[prec] = (time.perf_counter() - start, module.evaluations, float(module.last_losses["loss/total"]))
    for prec, (seconds, evals, loss) in results.items():
        print(
            f"{prec:>10}: {args.steps} steps, {evals} evaluations in {seconds:.1f}s ({seconds / evals:.3f} s/evaluation),"
            f" final loss {loss:.6g}"
        )
    (t32, e32, l32), (t16, e16, l16) = results.values()
    print(
        f"bf16-mixed: {(t32 / e32) / (t16 / e16):.2f}x the speed per evaluation, final loss {(l16 - l32) / l32:+.2%} vs fp32"
    )


HELP = "bf16-mixed vs fp32 speed and final loss (CUDA or AMX)"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--layers", default="gatys")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--force", action="store_true", help="run even without CUDA or AMX (a functional check)")
    p.set_defaults(run=precision)
