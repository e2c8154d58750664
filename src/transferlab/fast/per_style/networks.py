"""Feed-forward transformation networks: [0, 1] RGB of any size in, [0, 1] RGB of the same size out.

- ``JohnsonNet``: Johnson et al. (2016) with the usual fixes (instance norm, reflection padding,
  nearest upsampling + conv instead of transposed conv against checkerboards).
- ``LightNet``: the same plan with depthwise-separable convolutions and a width multiplier, for CPUs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHS = ("johnson", "light")
# Bounds of ``build_network``'s width and blocks, checked at the door and on every checkpoint before a network
# is built (a checkpoint naming 1e6 blocks would allocate until the machine runs out of memory).
MAX_WIDTH = 8
MAX_BLOCKS = 32


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, separable: bool = False) -> nn.Sequential:
    pad = nn.ReflectionPad2d(kernel // 2)
    if not separable or c_in < 8:  # the RGB stem stays a full conv: 3 channels are too few to separate
        return nn.Sequential(pad, nn.Conv2d(c_in, c_out, kernel, stride))
    return nn.Sequential(pad, nn.Conv2d(c_in, c_in, kernel, stride, groups=c_in), nn.Conv2d(c_in, c_out, 1))


def _block(c_in: int, c_out: int, kernel: int, stride: int = 1, separable: bool = False) -> nn.Sequential:
    return nn.Sequential(
        _conv(c_in, c_out, kernel, stride, separable), nn.InstanceNorm2d(c_out, affine=True), nn.ReLU()
    )


class Residual(nn.Module):
    def __init__(self, channels: int, separable: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(channels, channels, 3, separable=separable),
            _conv(channels, channels, 3, separable=separable),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the encoder's size at this level (2x, or 2x - 1 after an odd
    side), then a conv block; no transposed conv, so no checkerboard artefacts."""

    def __init__(self, c_in: int, c_out: int, separable: bool) -> None:
        super().__init__()
        self.block = _block(c_in, c_out, 3, separable=separable)

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        return self.block(F.interpolate(x, size=like.shape[-2:], mode="nearest"))


class TransformNet(nn.Module):
    """Encoder (9x9 stem, two stride-2 convs), ``blocks`` residual blocks, decoder (two upsamplings, 9x9 out).

    Sizes need no padding or cropping: a stride-2 conv gives ceil(side / 2) and each upsampling returns
    to the size its encoder level had, so the output has the input's size for any side >= MIN_SIZE, and
    torch.export / ONNX see one graph with symbolic height and width.
    """

    def __init__(self, width: int = 32, blocks: int = 5, separable: bool = False) -> None:
        super().__init__()
        w = width
        self.stem = _block(3, w, 9)
        self.down1 = _block(w, 2 * w, 3, 2, separable)
        self.down2 = _block(2 * w, 4 * w, 3, 2, separable)
        self.residual = nn.Sequential(*(Residual(4 * w, separable) for _ in range(blocks)))
        self.up1 = Upsample(4 * w, 2 * w, separable)
        self.up2 = Upsample(2 * w, w, separable)
        self.out = _conv(w, 3, 9)

    def forward(self, image: Tensor) -> Tensor:
        # 2x - 1 centres the input on 0; the sigmoid maps to [0, 1] without clamping's dead gradient.
        full = self.stem(image * 2 - 1)
        half = self.down1(full)
        x = self.residual(self.down2(half))
        return torch.sigmoid(self.out(self.up2(self.up1(x, half), full)))


def build_network(arch: str, width: float = 1.0, blocks: int = 5) -> TransformNet:
    """``round(32 * width)`` base channels (Johnson et al.: 32, i.e. width 1); ``johnson`` has full
    convolutions, ``light`` depthwise-separable ones (the RGB stem and output stay full)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown network {arch!r}; choose one of {ARCHS}")
    return TransformNet(max(4, round(32 * width)), blocks, separable=arch == "light")


MIN_SIZE = 8  # smallest side a network accepts: the 9x9 reflection pad needs > 4 px, the quarter level >= 2
