"""Issue 16 item 2: what each memory part buys, each runtime switch off against the plain baseline."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import torch

from bench.common import load, machine, reset_peak, rss_mib
from bench.stylize.runs import PlainGatys, fit, make_cfg, run_child, style_hw
from transferlab import conv_choice, runtime
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings

SWITCHES = {  # variant: (runtime.keep_freed_memory, runtime.winograd); None: the plain baseline
    "default": (True, "auto"),
    "winograd=true": (True, True),
    "winograd=false": (True, False),
    "keep_freed_memory=false": (False, "auto"),
    "both false": (False, False),
    "plain baseline": None,
}


def switches_child(size: int, layers: str, history: int, steps: int, variant: str) -> dict[str, Any]:
    """Peak memory and seconds per evaluation of ``steps`` L-BFGS steps in this fresh process: the stylize
    run with ``variant``'s runtime switches, or ``PlainGatys`` driven by the same L-BFGS."""
    rss0 = rss_mib()
    switches = SWITCHES[variant] or (False, False)
    # runtime.winograd=auto times each layer shape in a cache of its own: a first run on this machine, whose
    # timing cost is reported (the timing runs in the first step, which s/eval leaves out)
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
    cfg = make_cfg(
        size,
        layers,
        f"optimizer.history_size={history}",
        f"runtime.keep_freed_memory={str(switches[0]).lower()}",
        f"runtime.winograd={str(switches[1]).lower()}",
    )
    s = StyleSettings.from_cfg(cfg)
    torch.manual_seed(cfg.seed)
    module, _ = stylize.build(s)
    hw = tuple(module.image.shape[-2:])
    est = s.memory.estimate(hw, style_hw(module))
    if SWITCHES[variant] is None:
        plain = PlainGatys(module)
        module.perceptual.encoder = None  # the baseline holds its own VGG
        opt = module.optimizer_settings
        lbfgs = torch.optim.LBFGS(
            [module.image], lr=opt.lr, max_iter=1, max_eval=25, history_size=history, line_search_fn=opt.line_search
        )
        evaluations = [0]

        def closure() -> float:
            evaluations[0] += 1
            return plain.evaluate()

        reset_peak()
        points = []
        start = time.perf_counter()
        for _ in range(steps):
            lbfgs.step(closure)
            points.append((time.perf_counter() - start, evaluations[0]))
    else:
        runtime.configure(s.runtime)  # as stylize.run does once the weights are loaded
        reset_peak()
        points = [(p[0], p[1]) for p in fit(module, None, 10**6, max_steps=steps).points]
    (t0, e0), (t1, e1) = points[0], points[-1]
    return {
        "size": list(hw),
        "peak_mib": rss_mib("VmHWM") - rss0,
        "baseline_mib": rss0,
        "estimate_mib": est.peak_bytes / 2**20 if SWITCHES[variant] else None,
        "s_per_eval": (t1 - t0) / max(1, e1 - e0),
        "calibration_s": conv_choice._spent,
    }


def switches(args: argparse.Namespace) -> None:
    """Each memory part a stylize run adds over the plain baseline, with its switch and what it buys in speed."""
    print(
        f"== memory and speed by runtime switch (VGG19, layers={args.layers}, L-BFGS history {args.history},"
        f" {args.history + 2} steps, fp32)\nmachine: {machine()}"
    )
    print(
        "peak = peak resident memory of a fresh process during build + fit, less its resident memory after imports;"
        " s/eval after the first step; plain baseline = PlainGatys (whole vgg19().features, hooks, style features"
        " re-extracted per evaluation) under the same L-BFGS"
    )
    print(
        f"{'size':>9} {'variant':>24} {'peak MiB':>8} {'vs plain':>8} {'estimate':>8} {'error':>6}"
        f" {'s/eval':>7} {'vs default':>10} {'timing s':>8}"
    )
    for size in args.sizes:
        rows = {
            v: run_child(
                "switches", size=size, layers=args.layers, history=args.history, steps=args.history + 2, variant=v
            )
            for v in SWITCHES
        }
        plain, default = rows["plain baseline"], rows["default"]
        for v, r in rows.items():
            est = r["estimate_mib"]
            print(
                f"{r['size'][0]:>4}x{r['size'][1]:<4} {v:>24} {r['peak_mib']:8.0f}"
                f" {r['peak_mib'] / plain['peak_mib']:7.2f}x"
                + (f" {est:8.0f} {(est - r['peak_mib']) / r['peak_mib']:+6.0%}" if est else f" {'-':>8} {'':>6}")
                + f" {r['s_per_eval']:7.3f} {r['s_per_eval'] / default['s_per_eval']:9.2f}x {r['calibration_s']:8.2f}",
                flush=True,
            )
    print(f"process baseline (imports) {plain['baseline_mib']:.0f} MiB, not counted; load average after: {load()}")


HELP = "memory and speed with each runtime switch off, vs the plain baseline"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--history", type=int, default=10, help="L-BFGS history size (the same for every variant)")
    p.set_defaults(run=switches)
