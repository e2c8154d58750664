"""Feed-forward transformation networks: [0, 1] RGB of any size in, [0, 1] RGB of the same size out.

One plan (``TransformNet``: stem, stride-2 levels, residual blocks, as many upsamplings, output conv; instance
norm; nearest upsampling + conv instead of transposed conv against checkerboards), three designs of it:

- ``johnson``: Johnson et al. (2016) with the usual fixes: full convolutions, reflection padding, 9x9 ends.
- ``light``: the same with depthwise-separable convolutions and a width multiplier, for CPUs.
- ``narrow``: full 3x3 convolutions everywhere (the RGB ends too), zero padding inside the conv: what runs
  fastest in ONNX Runtime on a CPU with AVX-512 (``python scripts/benchmark_fast.py --design``). Depthwise
  convolutions, separate reflection-pad passes and 9x9 convs with 3 channels on one side are bound by
  memory or by short vectors there. (A third stride-2 level, ``Design.downsample=3``, is faster still but
  needs sides >= 9: instance norm takes no 1x1 map.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Design:
    """How a ``TransformNet`` is built: depthwise-separable convs or full ones, the number of stride-2
    levels, the kernel of the RGB stem and output conv, reflection padding (a pass of its own) or zeros."""

    separable: bool = False
    downsample: int = 2
    ends: int = 9
    reflect: bool = True


DESIGNS = {
    "johnson": Design(),
    "light": Design(separable=True),
    "narrow": Design(ends=3, reflect=False),
}
ARCHS = tuple(DESIGNS)
# Bounds of ``build_network``'s width and blocks, checked at the door and on every checkpoint before a network
# is built (a checkpoint naming 1e6 blocks would allocate until the machine runs out of memory).
MAX_WIDTH = 8
MAX_BLOCKS = 32


def _conv(c_in: int, c_out: int, kernel: int, stride: int, design: Design) -> nn.Sequential:
    # Identity in place of the pad keeps the checkpoint keys (``0.1.weight``) of every design alike.
    pad = nn.ReflectionPad2d(kernel // 2) if design.reflect else nn.Identity()
    inner = 0 if design.reflect else kernel // 2
    if not design.separable or c_in < 8:  # the RGB stem stays a full conv: 3 channels are too few to separate
        return nn.Sequential(pad, nn.Conv2d(c_in, c_out, kernel, stride, inner))
    depthwise = nn.Conv2d(c_in, c_in, kernel, stride, inner, groups=c_in)
    return nn.Sequential(pad, depthwise, nn.Conv2d(c_in, c_out, 1))


def _block(c_in: int, c_out: int, kernel: int, stride: int, design: Design) -> nn.Sequential:
    return nn.Sequential(_conv(c_in, c_out, kernel, stride, design), nn.InstanceNorm2d(c_out, affine=True), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, channels: int, design: Design) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(channels, channels, 3, 1, design),
            _conv(channels, channels, 3, 1, design),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the encoder's size at this level (2x, or 2x - 1 after an odd
    side), then a conv block; no transposed conv, so no checkerboard artefacts."""

    def __init__(self, c_in: int, c_out: int, design: Design) -> None:
        super().__init__()
        self.block = _block(c_in, c_out, 3, 1, design)

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        return self.block(F.interpolate(x, size=like.shape[-2:], mode="nearest"))


class TransformNet(nn.Module):
    """Encoder (a ``design.ends`` x ``design.ends`` stem, ``design.downsample`` stride-2 convs), ``blocks``
    residual blocks, decoder (as many upsamplings, an output conv like the stem). Channels double at each of
    the first two stride-2 levels and stay there (Johnson et al.: two levels, 4x the base width in the
    residual blocks); a third level keeps that width at an eighth of the side, so the residual blocks cost a
    quarter.

    Sizes need no padding or cropping: a stride-2 conv gives ceil(side / 2) and each upsampling returns
    to the size its encoder level had, so the output has the input's size for any side >= ``min_size``,
    and torch.export / ONNX see one graph with symbolic height and width.
    """

    def __init__(self, width: int = 32, blocks: int = 5, design: Design = Design()) -> None:
        super().__init__()
        levels = design.downsample
        channels = [width * 2 ** min(level, 2) for level in range(levels + 1)]
        self.levels = levels
        self.stem = _block(3, width, design.ends, 1, design)
        for i in range(levels):  # down1, up1, ...: the names (and checkpoint keys) of the two-level net
            self.add_module(f"down{i + 1}", _block(channels[i], channels[i + 1], 3, 2, design))
        self.residual = nn.Sequential(*(Residual(channels[-1], design) for _ in range(blocks)))
        for i in range(levels):
            self.add_module(f"up{i + 1}", Upsample(channels[-1 - i], channels[-2 - i], design))
        self.out = _conv(width, 3, design.ends, 1, replace(design, separable=False))  # the RGB output: full

    def forward(self, image: Tensor) -> Tensor:
        # 2x - 1 centres the input on 0; the sigmoid maps to [0, 1] without clamping's dead gradient.
        levels = [self.stem(image * 2 - 1)]
        for i in range(self.levels):
            levels.append(getattr(self, f"down{i + 1}")(levels[-1]))
        x = self.residual(levels.pop())
        for i in range(self.levels):
            x = getattr(self, f"up{i + 1}")(x, levels.pop())
        return torch.sigmoid(self.out(x))


def build_network(arch: str, width: float = 1.0, blocks: int = 5) -> TransformNet:
    """``round(32 * width)`` base channels (Johnson et al.: 32, i.e. width 1) in ``arch``'s design (``DESIGNS``;
    the light one's RGB stem and output stay full convolutions)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown network {arch!r}; choose one of {ARCHS}")
    return TransformNet(max(4, round(32 * width)), blocks, DESIGNS[arch])


MIN_SIZE = 8  # smallest side a network accepts: the 9x9 reflection pad needs > 4 px, the quarter level >= 2
