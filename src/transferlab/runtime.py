"""Process-wide CPU settings for the tasks that build the backbone: the style optimization evaluates the
same network on the same image sizes hundreds of times, and the trainers and video as many."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import platform
from dataclasses import dataclass

import torch

from transferlab import console, winograd

log = logging.getLogger(__name__)

# glibc serves a block above its mmap threshold with an mmap of its own, unmapped on free; the threshold
# rises to each such block freed, up to this (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit), so a stock glibc heap
# keeps spare blocks up to this size (measured: benchmark_stylize.py switches).
GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class RuntimeSettings:
    """Process-wide settings every task that builds the backbone applies (``runtime.*`` in the config,
    where their defaults live; each can be turned off)."""

    flush_denormal: bool
    keep_freed_memory: bool
    winograd: winograd.Mode  # VGG's convolutions as winograd.WinogradConv2d on CPU: "auto" times both

    def heap_block_limit(self, device: str | torch.device) -> float:
        """The largest freed block a run on ``device`` keeps in its heap (counted in the memory estimate):
        every block with ``keep_freed_memory``, up to glibc's own mmap threshold without; 0 elsewhere."""
        if not keeps_freed_blocks(device):
            return 0
        return math.inf if self.keep_freed_memory else GLIBC_MMAP_THRESHOLD_MAX

    def fast_convs(self, device: str | torch.device) -> winograd.Mode:
        """How a run on ``device`` may compute as Winograd convolutions (counted in the memory estimate)."""
        return self.winograd if winograd.runs_on(device) else False


def configure(settings: RuntimeSettings) -> None:
    """Apply ``settings`` to this process, and say so in the run's log."""
    if settings.flush_denormal:
        # Gradients through deep layers can reach denormal floats, which are ~100x slower on x86 CPUs.
        torch.set_flush_denormal(True)
    if settings.keep_freed_memory and _glibc():
        reuse_freed_blocks()
    log.info(
        "process settings: runtime.flush_denormal=%s runtime.keep_freed_memory=%s runtime.winograd=%s%s",
        settings.flush_denormal,
        settings.keep_freed_memory,
        settings.winograd,
        "" if _glibc() else " (no effect: not glibc)",
        extra=console.RUN_LOG_ONLY,
    )


def reuse_freed_blocks() -> None:
    """Make glibc keep freed memory for the next allocation instead of returning it to the system.

    glibc serves each block above 32 MiB (every full-resolution activation and gradient at 512 px)
    with its own mmap and unmaps it on free, so every evaluation page-faults the same memory in
    again. Serving every block from the heap and never trimming it made L-BFGS fits at 512 px
    5-15% faster per evaluation on a 2-core CPU (two runs), for 2-5% more peak memory:
    the process keeps its peak, and the heap holds a few spare copies of the largest blocks.
    Other C libraries are left as they are."""
    if not _glibc():
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)


def keeps_freed_blocks(device: str | torch.device) -> bool:
    """Whether a configured run on ``device`` holds freed blocks in its heap (a CPU run on glibc)."""
    return torch.device(device).type == "cpu" and _glibc()


def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
