"""Item 4: peak memory of a stylize run against the estimate, L-BFGS and Adam."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import ALL_ON, load, machine, reset_peak, rss_mib
from bench.stylize.runs import build, estimate_for, fit, make_cfg, run_child, style_hw
from transferlab import runtime, winograd

# glibc otherwise raises its mmap threshold as large blocks are freed and keeps later ones in its
# heap, so the resident peak also holds memory no tensor uses any more.
LIVE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def memory_child(size: int, layers: str, optimizer: str, history: int, steps: int, live: bool) -> dict[str, Any]:
    rss0 = rss_mib()
    cfg = make_cfg(
        size, layers, f"optimizer={optimizer}", *([f"optimizer.history_size={history}"] if optimizer == "lbfgs" else [])
    )
    reset_peak()
    module = build(cfg, targets=False)
    if not live:
        runtime.configure(ALL_ON)  # as stylize.run does once the weights are loaded: freed blocks are kept for reuse
    est = estimate_for(
        cfg,
        tuple(module.image.shape[-2:]),
        style_hw(module),
        heap_block_limit=0 if live else ALL_ON.heap_block_limit("cpu"),
        fast_convs=winograd.runs_on("cpu"),
    )
    start = time.perf_counter()
    fit(module, None, 10**6, max_steps=steps)
    return {
        "size": list(module.image.shape[-2:]),
        "peak_mib": rss_mib("VmHWM") - rss0,
        "baseline_mib": rss0,
        "estimate": est.parts,
        "evaluations": module.evaluations,
        "seconds": time.perf_counter() - start,
    }


def memory(args: argparse.Namespace) -> None:
    print(f"== peak memory of a stylize run (VGG19, layers={args.layers}, fp32, batch 1)\nmachine: {machine()}")
    print(
        "measured = peak resident memory of a fresh process during build + fit, less its resident memory after"
        " imports; L-BFGS runs history+2 steps so that its history is full"
    )
    if args.live:
        print(
            "--live: glibc's mmap threshold fixed at 64 KiB, so freed tensors leave the process at once and the"
            " peak is that of live tensors (what torch.cuda.max_memory_allocated reports on a GPU)"
        )
    print(f"{'size':>9} {'optimizer':>14} {'measured MiB':>12} {'estimate MiB':>12} {'error':>6}  estimate parts (MiB)")
    for size in args.sizes:
        for optimizer in ("lbfgs", "adam"):
            steps = args.history + 2 if optimizer == "lbfgs" else 3
            r = run_child(
                "memory",
                env=LIVE_MALLOC if args.live else None,
                size=size,
                layers=args.layers,
                optimizer=optimizer,
                history=args.history,
                steps=steps,
                live=args.live,
            )
            est = sum(r["estimate"].values()) / 2**20
            name = f"lbfgs(h={args.history})" if optimizer == "lbfgs" else "adam"
            parts = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in r["estimate"].items())
            print(
                f"{r['size'][0]:>4}x{r['size'][1]:<4} {name:>14} {r['peak_mib']:12.0f} {est:12.0f} "
                f"{(est - r['peak_mib']) / r['peak_mib']:+6.0%}  {parts}",
                flush=True,
            )
        h, w = r["size"]
        print(
            f"{'':10} L-BFGS history costs 2 x history x {3 * h * w} pixels x 4 B = {8 * 3 * h * w / 2**20:.1f} MiB per"
            f" entry: {args.history * 8 * 3 * h * w / 2**20:.0f} MiB at history {args.history},"
            f" {100 * 8 * 3 * h * w / 2**20:.0f} MiB at 100 (the default)"
        )
    print(f"process baseline (imports) {r['baseline_mib']:.0f} MiB, not counted; load average after: {load()}")


HELP = "peak memory vs estimate at several sizes, L-BFGS and Adam"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--history", type=int, default=10, help="L-BFGS history size (its cost is printed for 100 too)")
    p.add_argument("--live", action="store_true", help="measure live tensors: no heap retention by malloc")
    p.set_defaults(run=memory)
