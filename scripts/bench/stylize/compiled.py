"""Issue 16 item 5: torch.compile of the loss graph (inductor) against eager on this CPU."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from bench.common import load, machine
from bench.stylize.runs import build, fit, make_cfg, run_child
from transferlab import groups, runtime

COMPILE_VARIANTS = {  # variant: (runtime.winograd, torch.compile of module.losses)
    "eager": (True, False),
    "compiled": (True, True),
    "eager, winograd=false": (False, False),
    "compiled, winograd=false": (False, True),
}


def compile_child(size: int, layers: str, steps: int, variant: str) -> dict[str, Any]:
    """``steps`` L-BFGS steps of the Lightning fit in this fresh process, with ``module.losses`` (VGG to
    the deepest layer, Gram matrices, losses; the backward follows) compiled by inductor or not."""
    fast_convs, compiled = COMPILE_VARIANTS[variant]
    cfg = make_cfg(size, layers, f"runtime.winograd={str(fast_convs).lower()}")
    runtime.configure(groups.runtime(cfg))
    module = build(cfg, targets=False)
    if compiled:
        module.losses = torch.compile(module.losses)
    points = fit(module, None, 10**6, max_steps=steps).points
    (t0, e0), (t1, e1) = points[0][:2], points[-1][:2]
    return {"size": list(module.image.shape[-2:]), "first_s": t0, "s_per_eval": (t1 - t0) / max(1, e1 - e0)}


def compiled(args: argparse.Namespace) -> None:
    """Whether inductor's compiled loss graph beats the eager one per evaluation, and what compiling costs."""
    print(
        f"== torch.compile(module.losses) (inductor) vs eager, L-BFGS, VGG19 {args.layers}, {args.steps} steps,"
        f" {args.rounds} fresh processes each\nmachine: {machine()}"
    )
    print(f"{'size':>9} {'variant':>26} {'s/eval':>7} {'vs eager':>8} {'first step s':>12} {'compile s':>9}  rounds")
    for size in args.sizes:
        rows: dict[str, list[dict[str, Any]]] = {v: [] for v in COMPILE_VARIANTS}
        for _ in range(args.rounds):  # interleaved, so that a change in load hits every variant alike
            for v in COMPILE_VARIANTS:
                rows[v].append(run_child("compile", size=size, layers=args.layers, steps=args.steps, variant=v))
        med = {
            v: {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in ("first_s", "s_per_eval")} for v, rs in rows.items()
        }
        h, w = rows["eager"][0]["size"]
        for v, m in med.items():
            eager = med["eager" if COMPILE_VARIANTS[v][0] else "eager, winograd=false"]
            print(
                f"{h:>4}x{w:<4} {v:>26} {m['s_per_eval']:7.3f} {m['s_per_eval'] / eager['s_per_eval']:7.2f}x"
                f" {m['first_s']:12.1f} {m['first_s'] - eager['first_s'] if COMPILE_VARIANTS[v][1] else 0:9.1f}  "
                + " ".join(f"{r['s_per_eval']:.3f}" for r in rows[v]),
                flush=True,
            )
    print(
        "s/eval after the first step; compile s = first step compiled minus first step eager (same convolutions);"
        f" load average after: {load()}"
    )


HELP = "torch.compile of the loss graph (inductor) vs eager on this CPU"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.set_defaults(run=compiled)
