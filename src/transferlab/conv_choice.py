"""Which algorithm each frozen 3x3 convolution runs, chosen by timing the candidates on the machine that
runs it (``runtime.winograd=auto``), as cuDNN's benchmark mode does on a GPU.

Whether Winograd F(2x2, 3x3) beats oneDNN's direct convolution depends on the CPU: 1.2-1.8x faster on a
2-core AVX2 machine, 18-24% slower on an AVX-512 EPYC whose direct kernels run twice as fast (issue 30).
So the first forward of a layer shape with a gradient times both, forward and input gradient together,
on a band of rows of the real input, and records the faster under this CPU model, torch version and thread
count in the user's cache (``$XDG_CACHE_HOME/transferlab/conv_choices.json``): later runs on the same
machine read it and time nothing. Under precision=bf16-mixed the bf16 convolution is a candidate too,
recorded under keys that name the precision (fp32 runs never read them): native and about 2x faster
than fp32 on CPUs with AVX512_BF16 or AMX, emulated and slower on the others. Calibration stops when
its process budget is spent; shapes left untimed use the fixed rule of ``runtime.winograd=true`` (bf16
under bf16-mixed).
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from transferlab import console, fetch, files

log = logging.getLogger(__name__)

# Seconds a process may spend timing candidates: a few shapes at each size of a coarse-to-fine run.
BUDGET_S = 5.0
# Each candidate runs on a band of the input of about this many bytes: both algorithms' cost is linear
# in the positions, and a band keeps one timing of a 2048 px layer in the milliseconds.
BAND_BYTES = 4 * 2**20
REPEATS = 2  # after one warm-up; the minimum is kept
# What a record may hold: "bf16" only under the keys of precision=bf16-mixed (winograd.WinogradConv2d).
CHOICES = ("direct", "winograd", "bf16")

_recorded: dict[str, str] | None = None
_spent = 0.0


def cache_file() -> Path:
    return fetch.default_cache_dir() / "conv_choices.json"


def machine() -> str:
    """What a recorded choice holds for: the CPU model, torch's version and its thread count."""
    return f"{cpu_model()}|torch {torch.__version__}|{torch.get_num_threads()} threads"


@functools.cache  # read once: machine() is asked at every timed layer's forward
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512_BF16 or AMX, the ARM64 BF16 extension): there
    oneDNN's bf16 convolutions ran 1.9-3.0x faster than fp32 (forward and input gradient, AVX-512 EPYC);
    elsewhere it emulates bf16: 3.9x slower than fp32 with AVX-512 alone, 24x with AVX2 (a 256-channel 3x3
    convolution at 64x64, forward and input gradient, one thread, ``ONEDNN_MAX_CPU_ISA`` on that EPYC)."""
    caps = torch.cpu.get_capabilities()
    return any(caps.get(name, False) for name in ("avx512_bf16", "amx_bf16", "bf16"))


def recorded(key: str) -> str | None:
    """The algorithm recorded for ``key`` on this machine, if any."""
    return _load().get(f"{machine()}|{key}")


def choose(key: str, candidates: Callable[[], dict[str, Callable[[], None]]]) -> str | None:
    """The algorithm for ``key``: the recorded one, or the fastest of ``candidates()`` (each runs the layer
    on a band of its input, forward and backward) timed now and recorded; None once the budget is spent."""
    global _spent
    found = recorded(key)
    if found is not None or _spent >= BUDGET_S:
        return found
    start = time.perf_counter()
    times = {name: _time(run) for name, run in candidates().items()}
    _spent += time.perf_counter() - start
    best = min(times, key=times.__getitem__)
    log.info(
        "convolution %s: %s, so %s%s",
        key,
        ", ".join(f"{name} {t * 1e3:.2f} ms" for name, t in times.items()),
        best,
        ""
        if _spent < BUDGET_S
        else f" (calibration budget of {BUDGET_S:.0f} s spent: untimed shapes use the fixed rule)",
        extra=console.RUN_LOG_ONLY,  # a record of the machine, once per shape: not the console's business
    )
    _record(f"{machine()}|{key}", best)
    return best


def _time(run: Callable[[], None]) -> float:
    run()  # warm-up: first-touch of buffers, oneDNN's primitive cache
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _load() -> dict[str, str]:
    global _recorded
    if _recorded is None:
        _recorded = _read(cache_file())
    return _recorded


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: calibrate again and rewrite it
    return {k: v for k, v in data.items() if isinstance(k, str) and v in CHOICES} if isinstance(data, dict) else {}


def _record(entry: str, choice: str) -> None:
    """Keep ``choice`` for this process, and merge it into the cache file (other processes may have added
    theirs since this one read it); a cache that cannot be written only costs a calibration next time."""
    _load()[entry] = choice
    path = cache_file()
    try:
        files.write_json({**_read(path), entry: choice}, path)
    except OSError as exc:
        log.warning("could not record the convolution choice in %s (%s): the next run times it again", path, exc)
