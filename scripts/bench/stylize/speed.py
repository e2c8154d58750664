"""Item 1 and 2: seconds per L-BFGS evaluation against its FLOP lower bound and a plain implementation."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bench.common import ALL_ON, load, machine, reset_peak, rss_mib, timed
from bench.stylize.runs import (
    PlainGatys,
    build,
    estimate_for,
    evaluation,
    layer_sets,
    make_cfg,
    run_child,
    style_hw,
    weights,
)
from transferlab import backbone, runtime, winograd
from transferlab.style import estimate


def speed_child(size: int, layers: str, rounds: int, parts: list[str]) -> dict[str, Any]:
    """``rounds`` timed evaluations of ``parts`` (``ours``, ``plain`` or both, interleaved) in this process."""
    rss0 = rss_mib()
    # The door's memory check would count this process's own evaluations against the estimate it makes below.
    cfg = make_cfg(size, layers, "task.memory_check=false")
    module = build(cfg, targets="ours" in parts)
    runtime.configure(ALL_ON)  # as stylize.run does, once the weights are loaded
    timers: dict[str, Callable[[], Any]] = {}
    result: dict[str, Any] = {"size": list(module.image.shape[-2:]), "layers": layers}
    if "ours" in parts:
        timers["ours"] = evaluation(module)
        reset_peak()
        result["loss"] = timers["ours"]()  # warm-up; its peak is the evaluation's (no optimizer state yet)
        result["peak_mib"] = rss_mib("VmHWM") - rss0
        est = estimate_for(
            cfg,
            tuple(module.image.shape[-2:]),
            style_hw(module),
            heap_block_limit=ALL_ON.heap_block_limit("cpu"),
            fast_convs=winograd.runs_on("cpu"),
        )
        result["estimate_mib"] = (est.peak_bytes - est.parts["optimizer"]) / 2**20
        grad = module.image.grad.clone()
    if "plain" in parts:
        plain = PlainGatys(module)
        timers["plain"] = plain.evaluate
        if "ours" in parts:
            result["plain_loss"] = plain.evaluate()
            result["plain_grad_err"] = float((module.image.grad - grad).abs().max() / grad.abs().max())
        else:
            plain.evaluate()  # warm-up
            module.perceptual.encoder = None  # PlainGatys holds its own VGG
    content, style = layer_sets(cfg)
    flops = estimate.evaluation_flops(cfg.model.arch, content + style, style, *module.image.shape[-2:])
    plan = estimate.layer_plan(
        cfg.model.arch, backbone.deepest(cfg.model.arch, content + style), *module.image.shape[-2:]
    )
    # Winograd layers multiply 16 times per 2x2 outputs where a direct convolution multiplies 36 times.
    fast = sum(
        4 * 9 * ly.in_channels * ly.channels * ly.height * ly.width
        for ly in plan
        if ly.kind == "conv" and ly.in_channels >= winograd.MIN_CHANNELS
    )
    rows = []
    for _ in range(rounds):
        # Interleaved, so that the bound and our time see the same share of a contended CPU.
        row = {
            "nchw": estimate.conv_throughput(channels_last=False, repeats=1),
            "cl": estimate.conv_throughput(channels_last=True, repeats=1),
        }
        rows.append(row | {name: timed(fn) for name, fn in timers.items()})
    return result | {"flops": flops, "done": flops - fast * 5 / 9, "rows": rows}


def speed(args: argparse.Namespace) -> None:
    print(f"== speed: one L-BFGS function evaluation (VGG19, fp32, model.weights={weights()})\nmachine: {machine()}")
    print(
        "lower bound = FLOPs / best throughput of a 256->256 3x3 conv on 128x128 (fp32, NCHW or channels-last), measured"
        f" before each timing; times are the best of {args.rounds} rounds (other processes only ever add time)"
    )
    print(
        "done = the same ratio against the multiplications actually performed: the Winograd convolutions (>= 256 input"
        " channels, on CPU) do 16 for every 36 of a direct convolution"
    )
    header = (
        f"{'size':>9} {'layers':>6} {'GFLOP':>6} {'conv GF/s nchw/cl':>17} {'bound s':>7} {'ours s':>7} {'ratio':>6}"
        f" {'(done)':>6}"
    )
    header += f" {'plain s':>7} {'speed-up':>8}" if args.baseline else ""
    print(header + f" {'peak MiB (est.)':>16}")
    for size in args.sizes:
        for layers in args.layers:
            if not args.baseline:
                runs = [["ours"]]
            elif size >= args.apart_from:  # the two do not fit in memory together
                runs = [["ours"], ["plain"]]
            else:
                runs = [["ours", "plain"]]
            parts = [run_child("speed", size=size, layers=layers, rounds=args.rounds, parts=p) for p in runs]
            r = parts[0]
            timed_rows = [x for p in parts for x in p["rows"]]
            best = {key: min(x[key] for x in timed_rows if key in x) for key in {k for x in timed_rows for k in x}}
            probe = {key: max(x[key] for x in timed_rows) for key in ("nchw", "cl")}
            bound = r["flops"] / max(probe.values())
            line = (
                f"{r['size'][0]:>4}x{r['size'][1]:<4} {layers:>6} {r['flops'] / 1e9:6.0f} "
                f"{probe['nchw'] / 1e9:8.0f}/{probe['cl'] / 1e9:<8.0f} {bound:7.3f} {best['ours']:7.3f} {best['ours'] / bound:5.2f}x"
                f" {best['ours'] * r['flops'] / r['done'] / bound:5.2f}x"
            )
            if args.baseline:
                line += f" {best['plain']:7.3f} {best['plain'] / best['ours']:7.2f}x"
            print(line + f" {r['peak_mib']:8.0f} ({r['estimate_mib']:.0f})", flush=True)
            if "plain_loss" in r:
                print(
                    f"{'':17} same function: loss ours {r['loss']:.6g} plain {r['plain_loss']:.6g}, "
                    f"max gradient difference {r['plain_grad_err']:.1e} (relative)"
                )
            elif args.baseline:
                print(f"{'':17} ours and plain timed in separate processes (from --apart-from {args.apart_from} px)")
    print(f"load average after: {load()}; peak = resident memory added by one evaluation (no optimizer state)")


HELP = "s/evaluation, FLOP lower bound, plain baseline, peak memory"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--layers", nargs="+", default=["gatys", "seed"])
    p.add_argument("--rounds", type=int, default=7, help="timed evaluations after one warm-up")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the plain implementation")
    p.add_argument(
        "--apart-from",
        type=int,
        default=2048,
        help="from this size, time ours and the plain implementation in separate processes (memory)",
    )
    p.set_defaults(run=speed)
