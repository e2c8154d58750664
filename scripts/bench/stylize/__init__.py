"""Benchmarks of the stylize task's optimization loop (issue 4), on this machine; random VGG weights
unless ``--weights`` names real ones.

    python scripts/benchmark_stylize.py speed      # s/evaluation vs its FLOP lower bound, and vs a plain baseline
    python scripts/benchmark_stylize.py convs      # per VGG conv: Winograd vs the direct convolution
    python scripts/benchmark_stylize.py quality    # time to a loss: single-scale vs coarse-to-fine
    python scripts/benchmark_stylize.py memory     # peak memory vs the estimate, L-BFGS and Adam
    python scripts/benchmark_stylize.py switches   # memory and speed with each runtime switch off, vs the plain baseline
    python scripts/benchmark_stylize.py overhead   # Lightning fit vs a plain loop doing the same evaluations
    python scripts/benchmark_stylize.py compile    # torch.compile of the loss graph (inductor) vs eager
    python scripts/benchmark_stylize.py precision  # bf16-mixed vs fp32 (CUDA, or a CPU with AVX512_BF16 or AMX)
    python scripts/benchmark_stylize.py backbones  # ResNet-50 (with and without softmax) beside VGG19: s/eval, memory
    python scripts/benchmark_stylize.py peers      # the default vs each fixed choice, neural-style-pt, an optimized script

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
from bench.stylize import backbones, compiled, convs, memory, overhead, peers, precision, quality, speed, switches

# Each study's module gives its subcommand's HELP and ``arguments`` (its options and the function that runs it).
STUDIES = {
    "speed": speed,
    "convs": convs,
    "quality": quality,
    "memory": memory,
    "switches": switches,
    "overhead": overhead,
    "compile": compiled,
    "precision": precision,
    "backbones": backbones,
    "peers": peers,
}
# The sections a study runs in fresh processes (``runs.run_child``).
CHILDREN = {
    "speed": speed.speed_child,
    "memory": memory.memory_child,
    "switches": switches.switches_child,
    "compile": compiled.compile_child,
    "backbones": backbones.backbones_child,
    "peers": peers.peers_child,
}


def child(section: str, kwargs: str) -> None:
    """A section in a fresh process (``runs.run_child``): its result as the last line of stdout."""
    quiet(os.environ.get("BENCH_WARNINGS") == "1")
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    result = CHILDREN[section](**json.loads(kwargs))
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
    for name, study in STUDIES.items():
        study.arguments(sections.add_parser(name, help=study.HELP))
    args = parser.parse_args()
    quiet(args.warnings)
    os.environ["BENCH_THREADS"] = str(args.threads)  # children inherit both
    os.environ["BENCH_WEIGHTS"] = args.weights
    torch.set_num_threads(args.threads)
    args.run(args)
