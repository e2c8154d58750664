"""Memory a run will need, known before it allocates: the device's available memory, one check that refuses
a size beyond it in one line, and the measured footprint of a feed-forward network per pixel.

A network's footprint is measured, not modelled layer by layer (``style/estimate.py`` models VGG under
L-BFGS): the network runs once on each of two small probe images while every tensor its operators create
is counted at PyTorch's dispatch level, so the peak of the bytes alive at once is known on any device,
without allocator statistics. A feed-forward network's memory is a fixed part plus a part proportional to
the pixels (every activation scales with them), so two probes give both; sizes are extrapolated from them.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from transferlab.errors import ConfigError

# The probe sides a footprint is measured at (raised to a network's smallest side where it needs more).
PROBES = (64, 128)
# What a run may plan to use of the device's available memory: the rest is for the process around it
# (the decoded image, the outputs being written, the allocator's spare blocks).
BUDGET_SHARE = 0.8


class MemoryLimitError(ConfigError):
    """A size the user chose needs more memory than the device has."""


def available_memory(device: str | torch.device) -> int:
    """Bytes a run may use on ``device``: free CUDA memory, MPS's recommended limit, or the system's
    available memory (all of it where the OS does not say what is available)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if kind == "mps":
        return torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()
    meminfo = Path("/proc/meminfo")
    found = re.search(r"MemAvailable:\s+(\d+) kB", meminfo.read_text()) if meminfo.is_file() else None
    return int(found.group(1)) * 1024 if found else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def budget(device: str | torch.device) -> int:
    """Bytes a feed-forward run plans with on ``device``: BUDGET_SHARE of its available memory."""
    return int(BUDGET_SHARE * available_memory(device))


def check(peak: int, device: str | torch.device, what: str, fix: str) -> None:
    """Refuse, before anything is allocated, a run whose estimated ``peak`` bytes exceed what ``device`` has:
    one line naming ``what`` (the key and value) and the ``fix``."""
    available = available_memory(device)
    if peak > available:
        raise MemoryLimitError(
            f"{what}: the run needs an estimated {peak / 2**30:.1f} GiB at its peak but {device} has "
            f"{available / 2**30:.1f} GiB available; {fix}"
        )


class _Live(TorchDispatchMode):
    """Counts the bytes of the storages that operators create while they are referenced; keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.owners: dict[int, int] = {}  # storage pointer -> tensors alive on it
        self.seen: set[int] = set()  # ids of the tensors counted (an in-place op returns its input)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and id(t) not in self.seen and t.device.type != "meta":
                storage = t.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
                self.seen.add(id(t))
                if self.owners.get(key, 0) == 0:
                    self.live += size
                    self.peak = max(self.peak, self.live)
                self.owners[key] = self.owners.get(key, 0) + 1
                weakref.finalize(t, self._release, id(t), key, size)
        return out

    def _release(self, ident: int, key: int, size: int) -> None:
        self.seen.discard(ident)
        self.owners[key] -= 1
        if self.owners[key] == 0:
            del self.owners[key]
            self.live -= size


def peak_bytes(fn: Callable[..., Any], *args: Any, grad: bool = False) -> int:
    """The most bytes of tensors that ``fn(*args)`` creates and holds at once (its arguments and
    parameters not counted), its output included; ``grad``: with autograd (``fn`` may call backward)."""
    with contextlib.nullcontext() if grad else torch.inference_mode():
        mode = _Live()
        with mode:
            out = fn(*args)
        del out
    return mode.peak


@dataclass(frozen=True)
class Footprint:
    """A feed-forward network's peak memory: ``fixed + per_pixel * pixels`` bytes for ``pixels`` input
    pixels in all (a batch's images together)."""

    fixed: int
    per_pixel: float

    def peak(self, pixels: int) -> int:
        return int(self.fixed + self.per_pixel * pixels)

    def largest_pixels(self, budget_bytes: int) -> int:
        """The most input pixels whose peak fits ``budget_bytes`` (0: none)."""
        return max(0, math.floor((budget_bytes - self.fixed) / self.per_pixel)) if self.per_pixel > 0 else 2**62

    def largest_side(self, budget_bytes: int, height: int, width: int) -> int:
        """The longest side an image of ``height x width``'s aspect may have for its peak to fit."""
        pixels = self.largest_pixels(budget_bytes)
        return math.floor(math.sqrt(pixels * max(height, width) / min(height, width)))


def probe_sides(min_side: int = 1) -> tuple[int, int]:
    """The two sides a footprint is measured at. A run of no more pixels than the larger one's square is
    not measured: measuring would allocate as much as the run."""
    small = max(PROBES[0], min_side)
    return small, max(PROBES[1], 2 * small)


def footprint(
    fn: Callable[[Tensor], Any], min_side: int = 1, device: str | torch.device = "cpu", grad: bool = False
) -> Footprint:
    """``fn``'s footprint on ``[1, 3, s, s]`` images, measured at two probe sides (each at least ``min_side``);
    ``grad``: with autograd (``fn`` may call backward). The probes come from their own generator: measuring
    does not move the seeded random numbers of a run."""
    small, large = probe_sides(min_side)
    g = torch.Generator().manual_seed(0)

    def probe(side: int) -> Tensor:
        return torch.rand(1, 3, side, side, generator=g).to(device)

    with contextlib.nullcontext() if grad else torch.inference_mode():
        fn(probe(small))  # a warm-up: what a first call caches (converted kernels) is not per pixel
    peaks = [peak_bytes(fn, probe(s), grad=grad) for s in (small, large)]
    per_pixel = max(0.0, (peaks[1] - peaks[0]) / (large**2 - small**2))
    return Footprint(max(0, int(peaks[0] - per_pixel * small**2)), per_pixel)


def check_training(
    loss: Callable[[Tensor], Tensor], module: nn.Module, pixels: int, device: str, what: str, min_side: int = 1
) -> None:
    """Refuse a training run whose step on ``pixels`` input pixels (a batch's crops together) would not fit
    ``device``: ``loss`` (an image batch to a scalar) forward and backward measured at the probes, ``module``'s
    gradients cleared after. A run no larger than the largest probe is not measured: that would cost as much."""
    if pixels <= probe_sides(min_side)[1] ** 2:
        return
    measured = footprint(lambda x: loss(x).backward(), min_side, grad=True)
    module.zero_grad(set_to_none=True)
    check(measured.peak(pixels), device, what, "choose a smaller data.crop or data.batch_size")
