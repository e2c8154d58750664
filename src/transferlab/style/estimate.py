"""What a style-transfer run will cost, known before it starts: peak memory, time per evaluation and
the time of the whole run.

One L-BFGS function evaluation is a forward pass of VGG to the deepest layer in use, the Gram
matrices of the style layers, and a backward pass to the input image only (the weights are
frozen). Its arithmetic is dominated by the 3x3 convolutions; elementwise work (ReLU, pooling,
losses) moves memory but adds no FLOPs worth counting, so ``flops / conv throughput`` is a
lower bound on the time of an evaluation.

The run's time is the time per evaluation at each scale times the evaluations there (one per step:
L-BFGS answers the start of each step from its last evaluation, and its line search seldom adds
more), at the conv throughput measured just before the run. It assumes the machine stays as idle as
it was during that measurement: other processes on its cores slow every evaluation alike.

A network of another family than VGG (``features.NodeFeatures``) is measured instead of modelled
(``measure``): its evaluation's tensors at two probe sizes give a fixed and a per-pixel part, as for a
feed-forward network, and torch's FLOP counter its FLOPs per pixel; the time bound is then looser for
networks of depthwise convolutions (MobileNet, EfficientNet, ConvNeXt), which run far below the dense conv
throughput it divides by.

Peak memory is the tensors alive at the end of the forward pass (what autograd saved for the
backward pass, the weights, images, targets and optimizer state) plus the largest gradients
alive during the backward pass. All sizes assume fp32.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transferlab import backbone, features, memory, winograd
from transferlab.losses import gram_matrix, total_variation

FP32 = 4
INT64 = 8
# Image-sized fp32 vectors L-BFGS holds besides its history, at most during its strong-Wolfe line
# search: flat gradient, previous gradient, direction, the copy of the start point, and the line
# search's gradients (start, previous, new, bracket).
LBFGS_VECTORS = 8
# Adam's two moments and its temporary denominator.
ADAM_VECTORS = 3
# Memory a run adds that is not tensors: modules Lightning imports as it fits, oneDNN's JIT code
# and scratch space. Measured on CPU: 40-50 MiB at every size (scripts/benchmark_stylize.py memory).
RUNTIME = 40 * 2**20
# Image-sized tensors alive in every run: the image, its gradient, and the closure's cached
# point and gradient (stylize.StyleTransfer), plus the normalized channels-last input of conv1_1.
IMAGE_TENSORS = 5
# Spare blocks of the largest layer's size that glibc's heap holds beyond the live tensors when a
# CPU run keeps freed memory (runtime.reuse_freed_blocks): measured 3.7-4.1 with L-BFGS at 256,
# 512 and 1024 px, 2.5-4.6 with Adam (scripts/benchmark_stylize.py memory).
HEAP_BLOCKS = 4
# What the heap holds besides, when Winograd convolutions run: their band buffers and padded
# copies, freed and reallocated at every layer's shapes, leave spare blocks of their own. Measured
# 57-129 MiB beyond the heap blocks above at 256, 512 and 1024 px, L-BFGS and Adam.
WINOGRAD_SPARE = 80 * 2**20
# Assumed conv throughput (FLOP/s) when none is measured: 2 cores of a recent x86 server.
DEFAULT_THROUGHPUT = 150e9
# The smaller side a network of another family is measured at (``measure``; the larger is twice it). The peak
# is the largest of straight lines in the pixels (at small sizes a fixed-size transient at the deep end, at
# large ones the shallow activations): extrapolated from 128 and 256 px it came out 11 % low at 800 px, from
# memory.PROBES' 64 and 128 px 6 % low at 320 px (ResNet-18). From 256 and 512 px: 8 % (1 MiB) low at
# 200 x 150, 1-2 % high at 800 x 600 and 1024 x 1024; ResNet-50 6 % high at 512 x 384.
PROBE_SIDE = 256
# How conv_throughput measures, as the estimate's line says it.
MEASURED = "one 3x3 convolution, 256 channels at 128 x 128 px, after a warm-up"


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # conv, relu or pool
    in_channels: int
    channels: int
    height: int
    width: int

    @property
    def numel(self) -> int:
        return self.channels * self.height * self.width


def layer_plan(arch: str, deepest: str, height: int, width: int) -> list[Layer]:
    """The layers VGGFeatures runs for an ``height x width`` input, up to ``deepest``."""
    names = backbone.layer_names(arch)
    plan, channels, h, w = [], 3, height, width
    entries = iter(names)
    for spec in backbone.feature_spec(arch):
        if spec == "M":
            h, w = h // 2, w // 2
            plan.append(Layer(next(entries), "pool", channels, channels, h, w))
        else:
            plan.append(Layer(next(entries), "conv", channels, spec, h, w))
            plan.append(Layer(next(entries), "relu", spec, spec, h, w))
            channels = spec
        if any(layer.name == deepest for layer in plan):
            return plan[: [layer.name for layer in plan].index(deepest) + 1]
    raise ValueError(f"{deepest} is not a layer of {arch}")


def evaluation_flops(arch: str, layers: Iterable[str], style_layers: Iterable[str], height: int, width: int) -> int:
    """FLOPs of one evaluation: each conv forward and its input gradient (2 x 9 x Cin x Cout x H x W
    each; conv1_1's input gradient included since the image needs it), and for each style layer
    the Gram matrix and its one-matmul gradient (2 x C^2 x H x W each)."""
    plan = layer_plan(arch, backbone.deepest(arch, layers), height, width)
    convs = sum(
        2 * 9 * layer.in_channels * layer.channels * layer.height * layer.width
        for layer in plan
        if layer.kind == "conv"
    )
    by_name = {layer.name: layer for layer in plan}
    grams = sum(2 * by_name[s].channels * by_name[s].numel for s in style_layers)
    return 2 * convs + 2 * grams


@dataclass(frozen=True)
class Estimate:
    parts: dict[str, int]  # bytes by component
    flops: int  # of one evaluation
    seconds: float  # per evaluation at ``throughput``
    throughput: float  # conv FLOP/s assumed or measured

    @property
    def peak_bytes(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """One log line: ``estimate: peak 1.23 GiB (activations ..., ...), 1.9 s/evaluation at ...``."""
        parts = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in self.parts.items())
        return (
            f"estimate: peak memory {self.peak_bytes / 2**30:.2f} GiB ({parts}); "
            f"{self.seconds:.2f} s per evaluation ({self.flops / 1e9:.0f} GFLOP at {self.throughput / 1e9:.0f} GFLOP/s)"
        )


def activation_bytes(plan: list[Layer], used: Iterable[str]) -> int:
    """Activation memory at the peak of an evaluation through ``plan`` returning the layers ``used``."""
    by_name = {layer.name: layer for layer in plan}
    # Saved for backward: every ReLU output (also the next conv's input), every pooling output
    # and its int64 indices, and a conv output whose ReLU cannot run in place (it is returned).
    saved = sum(layer.numel for layer in plan if layer.kind == "relu") * FP32
    saved += sum(layer.numel * (FP32 + INT64) for layer in plan if layer.kind == "pool")
    saved += sum(by_name[name].numel * FP32 for name in used if name.startswith("conv"))
    # Backward: the incoming and outgoing gradients of the largest layer.
    backward = 2 * max(layer.numel for layer in plan) * FP32
    return saved + backward


def optimizer_values(optimizer: str, history_size: int, pixels: int) -> int:
    """Values the optimizer holds for an image of ``pixels`` values."""
    if optimizer == "lbfgs":
        return (2 * history_size + LBFGS_VECTORS) * pixels
    if optimizer == "adam":
        return ADAM_VECTORS * pixels
    raise ValueError(f"optimizer {optimizer!r}: choose lbfgs or adam")


@dataclass(frozen=True)
class Measured:
    """What VGG's layer plan gives the estimate, measured for a network of any other family
    (``features.NodeFeatures``: its layers are too many kinds to model one by one). Activations are a fixed
    part plus a part per pixel, as for a feed-forward network (``memory.footprint``), and so are FLOPs."""

    activations: memory.Footprint  # tensors one evaluation creates: forward, transform, Grams, backward
    flops_per_pixel: float  # of one evaluation (torch's FlopCounterMode at the larger probe)
    largest_per_pixel: float  # values of the largest activation per input pixel
    weight_values: int  # parameters and buffers of the part that runs
    channels: dict[str, int]  # of each layer in use
    strides: dict[str, int]  # input pixels per feature position along a side, of each layer in use

    @property
    def min_side(self) -> int:
        """The shortest side that keeps every feature map in use non-empty."""
        return max(self.strides.values())


def measure(encoder: features.NodeFeatures, content_layers: Iterable[str], style_layers: Iterable[str]) -> Measured:
    """``encoder``'s evaluation measured at ``PROBE_SIDE`` and twice it (``memory.footprint``: a warm-up and two probes,
    FLOPs counted over the three): the content layers' features and the style layers' Gram matrices, squared
    and summed, back to the image, and the image's total variation (the loss's own shape, without targets)."""
    content_layers, style_layers = list(content_layers), list(style_layers)
    seen: dict[str, Any] = {"pixels": 0, "largest": 0.0}

    def evaluation(image: torch.Tensor) -> None:
        seen.update(pixels=seen["pixels"] + image[0, 0].numel(), side=image.shape[-1])
        out = encoder(image.requires_grad_())
        loss = sum(out[layer].square().mean() for layer in content_layers)
        loss = loss + sum(gram_matrix(out[layer]).square().mean() for layer in style_layers)
        total_variation(image.detach())  # the loss reports it at every weight (perceptual.PerceptualLoss)
        loss.backward()
        seen["shapes"] = {layer: value.shape for layer, value in out.items()}

    def largest(_: nn.Module, __: Any, out: Any) -> None:
        if torch.is_tensor(out):
            seen["largest"] = max(seen["largest"], out.numel() / seen["side"] ** 2)

    hooks = [m.register_forward_hook(largest) for m in encoder.modules() if not list(m.children())]
    try:
        with FlopCounterMode(display=False) as flops:
            footprint = memory.footprint(evaluation, PROBE_SIDE, grad=True)
    finally:
        for hook in hooks:
            hook.remove()
    side, shapes = seen["side"], seen["shapes"]
    return Measured(
        activations=footprint,
        flops_per_pixel=flops.get_total_flops() / seen["pixels"],
        largest_per_pixel=seen["largest"],
        weight_values=sum(t.numel() for t in (*encoder.parameters(), *encoder.buffers())),
        channels={layer: shape[1] for layer, shape in shapes.items()},
        strides={layer: max(1, round(side / min(shape[-2:]))) for layer, shape in shapes.items()},
    )


def estimate(
    arch: str,
    content_layers: Iterable[str],
    style_layers: Iterable[str],
    size: tuple[int, int],
    style_size: tuple[int, int],
    optimizer: str = "lbfgs",
    history_size: int = 100,
    throughput: float = DEFAULT_THROUGHPUT,
    heap_block_limit: float = 0,
    fast_convs: winograd.Mode = False,
    transform: str = "none",
    measured: Measured | None = None,
) -> Estimate:
    """Peak memory and time per evaluation of a stylize run on a ``size = (H, W)`` image with
    the style image at ``style_size``, batch 1, fp32. ``heap_block_limit``: the process keeps freed
    blocks of up to this many bytes for reuse (``runtime.RuntimeSettings.heap_block_limit``; 0: none), and
    its peak includes the spare ones.
    ``fast_convs``: the convolutions may run as Winograd convolutions (``winograd.runs_on``; the mode
    of ``backbone.build_features``), whose transformed kernels (16 values per 3x3 kernel) stay in memory
    besides the weights: every timed layer's with ``"auto"`` (an upper bound: the timing transforms them).
    ``transform``: VGG's features go through ``features.softmax`` (``model.feature_transform``).
    ``measured``: ``arch`` is a network of another family, measured by ``measure`` (with its transform)."""
    content_layers, style_layers = list(content_layers), list(style_layers)
    height, width = size
    pixels = 3 * height * width
    if measured is None:
        net = _vgg(arch, content_layers, style_layers, height, width, transform, fast_convs)
    else:
        net = _measured(measured, content_layers, style_layers, height, width)
    parts = {
        "activations": net.activations,
        "weights": net.weights * FP32,
        "images": (IMAGE_TENSORS * pixels + 3 * style_size[0] * style_size[1]) * FP32,
        "targets": net.targets * FP32,
        "optimizer": optimizer_values(optimizer, history_size, pixels) * FP32,
        "runtime": RUNTIME,
    }
    if heap_block_limit:
        spare = HEAP_BLOCKS * min(net.largest * FP32, heap_block_limit)
        parts["heap"] = int(spare) + (WINOGRAD_SPARE if fast_convs else 0)
    if fast_convs and measured is None:
        parts["winograd kernels"] = net.winograd * FP32
    return Estimate(parts, net.flops, net.flops / throughput, throughput)


class _Network(NamedTuple):
    """One evaluation through the loss network at one size: bytes of activations, and values of the rest."""

    activations: int
    weights: int
    largest: int
    targets: int
    flops: int
    winograd: int = 0


def _vgg(
    arch: str,
    content_layers: list[str],
    style_layers: list[str],
    height: int,
    width: int,
    transform: str,
    fast_convs: winograd.Mode,
) -> _Network:
    used = [*content_layers, *style_layers]
    plan = layer_plan(arch, backbone.deepest(arch, used), height, width)
    by_name = {layer.name: layer for layer in plan}
    activations = activation_bytes(plan, used)
    if transform == "softmax":
        # Each layer's transformed copy, saved for backward, and its fp32 input scaled by 1 / T.
        activations += 2 * sum(by_name[name].numel for name in dict.fromkeys(used)) * FP32
    convs = [layer for layer in plan if layer.kind == "conv"]
    return _Network(
        activations=activations,
        weights=sum(9 * layer.in_channels * layer.channels + layer.channels for layer in convs),
        largest=max(layer.numel for layer in plan),
        targets=sum(by_name[name].numel for name in content_layers)
        + sum(by_name[name].channels ** 2 for name in style_layers),
        flops=evaluation_flops(arch, used, style_layers, height, width),
        # Their transforms work in bands of winograd.BAND_BYTES: too small to count.
        winograd=sum(
            16 * c.in_channels * c.channels
            for c in convs
            if c.in_channels >= (winograd.MIN_CHANNELS_TIMED if fast_convs == "auto" else winograd.MIN_CHANNELS)
        ),
    )


def _measured(m: Measured, content_layers: list[str], style_layers: list[str], height: int, width: int) -> _Network:
    def positions(layer: str) -> int:
        stride = m.strides[layer]
        return -(-height // stride) * -(-width // stride)

    return _Network(
        activations=m.activations.peak(height * width),
        weights=m.weight_values,
        largest=int(m.largest_per_pixel * height * width),
        targets=sum(m.channels[name] * positions(name) for name in content_layers)
        + sum(m.channels[name] ** 2 for name in style_layers),
        flops=int(m.flops_per_pixel * height * width),
    )


def largest_size(
    budget_bytes: int, aspect: float, step: int = 32, limit: int = 8192, style_scale: float = 1.0, **kwargs
) -> int | None:
    """The largest long side (a multiple of ``step``) whose estimated peak fits ``budget_bytes``
    (None: not even ``step`` fits).
    ``aspect`` is the content image's width / height, the style image's long side is
    ``style_scale`` times the output's (its aspect taken as the content's: the style image's
    share of memory is small); ``kwargs`` go to ``estimate``."""

    def shape(long_side: int) -> tuple[int, int]:
        if aspect >= 1:
            return max(1, round(long_side / aspect)), long_side
        return long_side, max(1, round(long_side * aspect))

    def peak(long_side: int) -> int:
        return estimate(
            size=shape(long_side), style_size=shape(max(32, round(long_side * style_scale))), **kwargs
        ).peak_bytes

    if peak(step) > budget_bytes:
        return None
    low, high = 1, limit // step  # the peak grows with the size: bisect on multiples of step
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if peak(mid * step) <= budget_bytes else (low, mid - 1)
    return low * step


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def describe_total(scales: list[tuple[Estimate, int]]) -> str:
    """The whole run's time, for ``scales``: (the estimate at a scale, its evaluations), one per scale (a
    tiled scale: at the tile's size, for every tile's evaluations), at the throughput they were made with."""
    seconds = sum(est.seconds * evaluations for est, evaluations in scales)
    evaluations = sum(n for _, n in scales)
    return (
        f"total at least {duration(seconds)} for {evaluations} evaluations over {len(scales)} "
        f"scale{'s' if len(scales) > 1 else ''} (one per step; fewer where a scale converges early), "
        "at the conv throughput measured just now "
        f"({MEASURED}), assuming the machine stays idle: other load on its cores slows every evaluation"
    )


def conv_throughput(device: str | torch.device = "cpu", channels_last: bool = True, repeats: int = 3) -> float:
    """Measured fp32 FLOP/s of a large 3x3 convolution (256 -> 256 channels on 128 x 128, one
    of VGG's conv3 layers at 512 px): the median of ``repeats`` runs after a warm-up."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(1, 256, 128, 128, device=device).contiguous(memory_format=fmt)
    w = torch.randn(256, 256, 3, 3, device=device).contiguous(memory_format=fmt)
    flops = 2 * 9 * 256 * 256 * 128 * 128
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            F.conv2d(x, w, padding=1)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run is a warm-up (oneDNN/cuDNN pick and cache their kernels)
                times.append(time.perf_counter() - start)
    return flops / sorted(times)[len(times) // 2]
