"""What every benchmark shares: the machine and its load, timers, resident memory, fresh child processes,
and the one process-wide setting a benchmark makes (quiet output), applied by each command at its start."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from transferlab.runtime import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"  # the project's shared photos, styles and datasets
RESULTS = ROOT / "outputs" / "benchmarks"  # results kept between runs (git-ignored)
# Every process setting on, as the config's defaults are (configs/config.yaml runtime.*).
ALL_ON = RuntimeSettings(flush_denormal=True, keep_freed_memory=True, winograd=True)


def add_warnings_switch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warnings", action="store_true", help="show library warnings and Lightning's banners (hidden by default)"
    )


def quiet(show: bool = False) -> None:
    """Process-wide, at a command's start (never at import): Lightning's banner and tips, once per fit, and
    library warnings would bury the figures. ``show`` (``--warnings``) keeps them; children inherit the
    choice through ``BENCH_WARNINGS``."""
    os.environ["BENCH_WARNINGS"] = "1" if show else "0"
    if show:
        return
    import pytorch_lightning  # noqa: F401  (its import sets the level set here)

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def machine() -> str:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1) if found else cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}){gpu}; load average {load()}"
    )


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_time(fn: Callable[[], Any], repeats: int, sync: Callable[[], Any] = lambda: None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up; ``sync`` waits for a GPU."""
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rss_mib(key: str = "VmRSS") -> float:
    """This process's resident (VmRSS) or peak resident (VmHWM) memory, Linux only."""
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def run_child(command: Path, section: str, env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run ``section`` of the benchmark ``command`` (a ``scripts/benchmark_*.py`` file that answers
    ``_child SECTION JSON``) in a fresh process: clean peak memory, no state from earlier runs."""
    out = subprocess.run(
        [sys.executable, str(command), "_child", section, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if out.returncode:
        raise RuntimeError(f"child {section} {kwargs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
