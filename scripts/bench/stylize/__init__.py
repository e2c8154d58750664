"""Benchmarks of the stylize task's optimization loop (issue 4), on this machine; random VGG weights
unless ``--weights`` names real ones.

    python scripts/benchmark_stylize.py speed      # s/evaluation vs its FLOP lower bound, and vs a plain baseline
    python scripts/benchmark_stylize.py convs      # per VGG conv: Winograd vs the direct convolution
    python scripts/benchmark_stylize.py quality    # time to a loss: single-scale vs coarse-to-fine
    python scripts/benchmark_stylize.py memory     # peak memory vs the estimate, L-BFGS and Adam
    python scripts/benchmark_stylize.py switches   # memory and speed with each runtime switch off, vs the plain baseline
    python scripts/benchmark_stylize.py overhead   # Lightning fit vs a plain loop doing the same evaluations
    python scripts/benchmark_stylize.py compile    # torch.compile of the loss graph (inductor) vs eager
    python scripts/benchmark_stylize.py precision  # bf16-mixed vs fp32 (CUDA, or a CPU with AMX)

One module per study (this package), sharing ``runs`` (the config, the module, the fit, the plain baseline).

"Our" numbers come from the project's code path: ``stylize.build`` and the module's
``losses()`` plus ``backward()``, which is what its L-BFGS closure runs (``manual_backward`` is
``backward`` at precision 32). Every figure is printed with the machine and its load, since
other processes may share the CPU: the conv throughput that sets the lower bound is measured in
the same process, interleaved with the timings it is compared to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from bench.common import add_warnings_switch, quiet
from bench.stylize.compile import compile_child, compiled
from bench.stylize.convs import convs
from bench.stylize.memory import memory, memory_child
from bench.stylize.overhead import overhead
from bench.stylize.precision import precision
from bench.stylize.quality import quality
from bench.stylize.speed import speed, speed_child
from bench.stylize.switches import switches, switches_child


def child(section: str, kwargs: str) -> None:
    """A section in a fresh process (``runs.run_child``): its result as the last line of stdout."""
    quiet(os.environ.get("BENCH_WARNINGS") == "1")
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    result = {"speed": speed_child, "memory": memory_child, "switches": switches_child, "compile": compile_child}[
        section
    ](**json.loads(kwargs))
    print(json.dumps(result))


def main() -> None:
    """``scripts/benchmark_stylize.py``: a study by name, or ``_child SECTION JSON`` (``runs.run_child``)."""
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="intra-op threads; on a shared CPU fewer threads than cores can be faster",
    )
    parser.add_argument(
        "--weights",
        default="null",
        help="model.weights: null (random, the default), IMAGENET1K_V1 (torchvision's cache) or a state-dict file",
    )
    add_warnings_switch(parser)
    sections = parser.add_subparsers(dest="section", required=True)
    p = sections.add_parser("speed", help="s/evaluation, FLOP lower bound, plain baseline, peak memory")
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
    p = sections.add_parser("convs", help="per VGG conv shape: Winograd vs the direct convolution")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--rounds", type=int, default=7)
    p.set_defaults(run=convs)
    p = sections.add_parser("quality", help="time to the single-scale loss: coarse-to-fine schedules")
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
    p = sections.add_parser("memory", help="peak memory vs estimate at several sizes, L-BFGS and Adam")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--history", type=int, default=10, help="L-BFGS history size (its cost is printed for 100 too)")
    p.add_argument("--live", action="store_true", help="measure live tensors: no heap retention by malloc")
    p.set_defaults(run=memory)
    p = sections.add_parser("switches", help="memory and speed with each runtime switch off, vs the plain baseline")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--history", type=int, default=10, help="L-BFGS history size (the same for every variant)")
    p.set_defaults(run=switches)
    p = sections.add_parser("overhead", help="Lightning fit vs a plain loop doing the same evaluations (issue 16)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--evals", type=int, default=None, help="L-BFGS steps per run (default: 40 at 64 px, fewer above)")
    p.add_argument("--rounds", type=int, default=5)
    p.set_defaults(run=overhead)
    p = sections.add_parser("compile", help="torch.compile of the loss graph (inductor) vs eager on this CPU")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.set_defaults(run=compiled)
    p = sections.add_parser("precision", help="bf16-mixed vs fp32 speed and final loss (CUDA or AMX)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--layers", default="gatys")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--force", action="store_true", help="run even without CUDA or AMX (a functional check)")
    p.set_defaults(run=precision)
    args = parser.parse_args()
    quiet(args.warnings)
    os.environ["BENCH_THREADS"] = str(args.threads)  # children inherit both
    os.environ["BENCH_WEIGHTS"] = args.weights
    torch.set_num_threads(args.threads)
    args.run(args)
