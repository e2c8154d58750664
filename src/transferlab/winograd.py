"""3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016), for the
frozen deep layers of VGG on CPU.

Each 4x4 input tile (stride 2) becomes 16 values ``B^T d B`` and the kernel 16 matrices ``G g G^T``;
one batched matrix product over the 16 positions then gives 2x2 outputs per tile for 16
multiplications instead of 36, 2.25x fewer. The transforms are memory passes, so it pays where the
channels are many and the CPU's direct kernels are slow: VGG's layers with >= 256 input channels ran
1.2-1.8x faster (forward and input gradient) than oneDNN's direct convolution on a 2-core AVX2 CPU at
256-1024 px, with relative errors of ~3e-6, but 18-24% slower on an AVX-512 EPYC (docs/benchmarks.md).
So by default (``runtime.winograd=auto``) each layer shape takes whichever the machine runs faster,
timed once (conv_choice.py), with the bf16 convolution a third candidate under precision=bf16-mixed;
``true`` is the fixed rule below. Other devices (cuDNN has Winograd
kernels of its own) run the plain convolution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transferlab import conv_choice

# The fixed rule (runtime.winograd=true): below this many input channels the transforms' memory traffic
# cost more than the saved multiplies on the AVX2 CPU it was measured on.
MIN_CHANNELS = 256
# runtime.winograd=auto times every 3x3 layer from this many input channels (VGG's second on): the first,
# with 3, has too few multiplies to save.
MIN_CHANNELS_TIMED = 64
# On maps of fewer positions (VGG's deepest layers at coarse scales, tiles and small frames) the direct
# convolution won: 512->512 on 3x4 0.85x, on 4x6 0.95x; from 6x8 up Winograd won (1.02-1.43x), AVX-512
# EPYC, `benchmark_stylize.py convs --sizes 64 96 128 256`.
MIN_POSITIONS = 48
BAND_BYTES = 8 * 2**20
# runtime.winograd: True (the fixed rule), False (never), or "auto" (timed per layer shape).
Mode = Literal[True, False, "auto"]
# The precision whose choices among bf16 and fp32 convolutions are timed apart from fp32's (CPU autocast).
MIXED = "bf16-mixed"
_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_FORWARD = (0, 1, 2, 3)
# The input gradient is the convolution of the output gradient with the flipped, transposed kernel.
# Flipping a kernel reverses G's columns, which equals G with rows 0 and 3 swapped: the same
# transformed weights serve, transposed, with tile positions 0 and 3 swapped.
_FLIPPED = (3, 1, 2, 0)


def transform_weight(weight: Tensor) -> Tensor:
    """A ``[K, C, 3, 3]`` kernel as the 16 matrices ``G g G^T``, ``[16, C, K]``."""
    g = _G.to(weight)
    k, c = weight.shape[:2]
    return torch.einsum("ai,kcij,bj->abck", g, weight, g).reshape(16, c, k).contiguous()


def _convolve(x: Tensor, u: Tensor, order: tuple[int, int, int, int], bias: Tensor | None = None) -> Tensor:
    """``x`` ``[N, C, H, W]`` convolved (3x3, padding 1) with the transformed kernel ``u`` ``[16, C, K]``;
    ``order`` maps the transforms' tile positions (``_FLIPPED`` for the input gradient). Works in
    NHWC, so every pass reads and writes whole channel vectors; returns channels-last ``[N, K, H, W]``."""
    n, c, h, w = x.shape
    k = u.shape[-1]
    th, tw = (h + 1) // 2, (w + 1) // 2  # odd sizes: one extra row/column of zeros, cropped at the end
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + w % 2, 1, 1 + h % 2))
    # Not a view: autograd forbids in-place ops (VGG's ReLUs) on a view a custom Function returns.
    out = torch.empty(n, k, 2 * th, 2 * tw, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    quads = out.permute(0, 2, 3, 1).view(n, th, 2, tw, 2, k)
    # Bands of tile rows bound the transforms' buffers (16 values per tile, 4x the layer) to BAND_BYTES.
    band = max(1, BAND_BYTES // (16 * n * tw * max(c, k) * x.element_size()))
    for i in range(0, th, band):
        b = min(band, th - i)
        products = torch.bmm(_tiles(padded[:, 2 * i : 2 * (i + b) + 2], order), u).view(4, 4, n, b, tw, k)
        if bias is not None:
            products[order[1], order[1]] += bias  # A^T's row 1 is all ones: this position reaches every output
        _untile(products, order, quads[:, i : i + b])
    return out if (h, w) == (2 * th, 2 * tw) else out[..., :h, :w].clone(memory_format=torch.channels_last)


def _tiles(padded: Tensor, o: tuple[int, int, int, int]) -> Tensor:
    """``B^T d B`` of every 4x4 tile (stride 2) of ``padded`` ``[N, 2b + 2, 2t + 2, C]``, as ``[16, N * b * t, C]``."""
    n, hp, wp, c = padded.shape
    b, t = (hp - 2) // 2, (wp - 2) // 2

    def along(src: list[Tensor], dst: Tensor) -> None:  # B^T applied along one axis
        torch.sub(src[0], src[2], out=dst[o[0]])
        torch.add(src[1], src[2], out=dst[o[1]])
        torch.sub(src[2], src[1], out=dst[o[2]])
        torch.sub(src[1], src[3], out=dst[o[3]])

    rows = padded.new_empty(4, n, b, wp, c)
    along([padded[:, i : i + 2 * b : 2] for i in range(4)], rows)
    tiles = padded.new_empty(4, 4, n, b, t, c)
    along([rows[:, :, :, j : j + 2 * t : 2] for j in range(4)], tiles.transpose(0, 1))
    return tiles.view(16, -1, c)


def _untile(products: Tensor, o: tuple[int, int, int, int], out: Tensor) -> None:
    """``A^T m A`` of every tile's ``products`` ``[4, 4, N, b, t, K]``, written to ``out`` ``[N, b, 2, t, 2, K]``."""

    def along(src: list[Tensor], dst: list[Tensor]) -> None:  # A^T applied along one axis
        torch.add(src[0], src[1], out=dst[0]).add_(src[2])
        torch.sub(src[1], src[2], out=dst[1]).sub_(src[3])

    half = products.new_empty(2, *products.shape[1:])
    along([products[o[i]] for i in range(4)], list(half))
    for a in range(2):
        along([half[a, o[j]] for j in range(4)], [out[:, :, a, :, b] for b in range(2)])


class _Winograd(torch.autograd.Function):
    """The convolution with a gradient for the input only (the weights are frozen)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, u: Tensor, bias: Tensor | None) -> Tensor:
        ctx.u = u  # a constant: no need for save_for_backward's version checks
        return _convolve(x, u, _FORWARD, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return _convolve(grad, ctx.u.transpose(1, 2), _FLIPPED), None, None


class WinogradConv2d(nn.Conv2d):
    """A frozen 3x3, stride-1, padding-1 convolution that runs as Winograd F(2x2, 3x3) on CPU in
    fp32 where that is faster, and as the plain convolution elsewhere (other devices and dtypes, weights
    that require a gradient). Where it is faster: with ``timed``, whichever of the two ran this layer
    shape faster on this machine (``conv_choice``); otherwise, and for shapes left untimed, the fixed rule
    (``MIN_CHANNELS`` input channels, ``MIN_POSITIONS`` positions). Under CPU autocast in bf16: the bf16
    convolution, or with ``timed`` whichever of it and the direct and Winograd fp32 ones ran faster."""

    @classmethod
    def of(cls, conv: nn.Conv2d, timed: bool = False) -> WinogradConv2d:
        """A WinogradConv2d sharing ``conv``'s parameters (so state dicts are unchanged)."""
        new = cls(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None, device="meta")
        new.weight, new.bias = conv.weight, conv.bias
        new.timed = timed
        return new

    timed = False

    _transformed: tuple[tuple[int, int], Tensor] | None = None

    def transformed(self) -> Tensor:
        """The transformed kernel, computed once for the weights' current storage and version."""
        key = (self.weight.data_ptr(), self.weight._version)
        if self._transformed is None or self._transformed[0] != key:
            self._transformed = (key, transform_weight(self.weight.detach()))
        return self._transformed[1]

    def forward(self, x: Tensor) -> Tensor:
        if not runs_on(x.device) or any(p.requires_grad for p in self.parameters()):
            return super().forward(x)
        if torch.is_autocast_enabled("cpu"):
            return self._mixed(x)
        if x.dtype != torch.float32 or not self.chooses_winograd(x):
            return super().forward(x)
        return self._winograd(x)

    def _winograd(self, x: Tensor) -> Tensor:
        # A timed layer's forwards without a gradient (the targets, once a run) follow the fixed rule, not its
        # choice: their kernel is not kept, so that a layer that chose the direct convolution holds none.
        keep = not self.timed or (torch.is_grad_enabled() and x.requires_grad)
        return _Winograd.apply(x, self.transformed() if keep else transform_weight(self.weight.detach()), self.bias)

    def _mixed(self, x: Tensor) -> Tensor:
        """Under CPU autocast in bf16 (precision=bf16-mixed): the bf16 convolution autocast makes of it, unless
        this layer shape ran faster in fp32 (direct or Winograd) when timed on this machine: bf16 is native
        and about 2x faster with AVX512_BF16 or AMX, emulated and slower without."""
        bf16 = torch.get_autocast_dtype("cpu") == torch.bfloat16
        choice = self.timed_choice(x, MIXED) if bf16 else None
        if choice is None or choice == "bf16":
            return super().forward(x)
        return in_fp32(super().forward if choice == "direct" else self._winograd)(x)

    def chooses_winograd(self, x: Tensor) -> bool:
        """Whether this layer runs ``x`` (fp32, no autocast) as Winograd: the timed choice for its shape, or
        the fixed rule where there is none."""
        _, _, h, w = x.shape
        choice = self.timed_choice(x, "32")
        if choice is None:
            return self.in_channels >= MIN_CHANNELS and h * w >= MIN_POSITIONS
        return choice == "winograd"

    def timed_choice(self, x: Tensor, precision: str) -> str | None:
        """The algorithm timed fastest for ``x``'s shape at ``precision`` ("32" or ``MIXED``) on this machine,
        timed now if it is the first; None for layers not timed, shapes left untimed, and forwards without a
        gradient. Those (the targets, once a run) keep the fixed rule so that a run computes the same targets
        whether or not its shapes were timed before: a first run and a rerun give the same image."""
        if not (self.timed and torch.is_grad_enabled() and x.requires_grad):
            return None
        n, _, h, w = x.shape
        key = f"{self.in_channels}->{self.out_channels} at {h}x{w} batch {n}"
        # fp32 keys stay as they were recorded before bf16 was a candidate; bf16-mixed ones say so.
        key += "" if precision == "32" else f" {precision}"
        choice = conv_choice.choose(key, lambda: self._candidates(x, precision))
        if choice in ("direct", "bf16"):
            self._transformed = None  # the timing's kernels: held only by layers that use them
        return choice

    def _candidates(self, x: Tensor, precision: str) -> dict[str, Callable[[], None]]:
        """Each algorithm's forward and input gradient on a band of rows of ``x`` (all cost in proportion
        to the positions), in ``x``'s memory format and dtype; under ``MIXED``, the fp32 ones with autocast
        off, on the band cast to fp32, and the bf16 convolution too where the CPU computes bf16 natively."""
        n, c, h, w = x.shape
        rows = min(h, max(3, conv_choice.BAND_BYTES // (n * c * w * x.element_size())))
        band = x.detach()[..., :rows, :].clone().requires_grad_()

        def run(conv: Callable[[Tensor], Tensor]) -> Callable[[], None]:
            def once() -> None:
                out = conv(band)
                torch.autograd.grad(out, band, torch.ones_like(out))

            return once

        fp32 = {"direct": super().forward, "winograd": self._winograd}
        if precision == "32":
            return {name: run(conv) for name, conv in fp32.items()}
        # Emulated bf16 (no AVX512_BF16 or AMX) ran 4-24x slower than fp32, and timing it alone could spend
        # the calibration budget several times over: not a candidate there.
        bf16 = {"bf16": run(super().forward)} if conv_choice.native_bf16() else {}
        return {**bf16, **{name: run(in_fp32(conv)) for name, conv in fp32.items()}}


def in_fp32(conv: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``conv`` with CPU autocast off, on its input cast to fp32 (a no-op on fp32)."""

    def run(x: Tensor) -> Tensor:
        with torch.autocast("cpu", enabled=False):
            return conv(x.float())

    return run


def runs_on(device: str | torch.device) -> bool:
    """Whether ``WinogradConv2d`` runs as Winograd on ``device`` (in fp32)."""
    return torch.device(device).type == "cpu"


def pays_off(module: nn.Module, timed: bool = False) -> bool:
    """Whether ``module`` is a 3x3, stride-1, padding-1 convolution with enough channels for Winograd:
    ``MIN_CHANNELS`` by the fixed rule, ``MIN_CHANNELS_TIMED`` to be timed."""
    return (
        isinstance(module, nn.Conv2d)
        and module.in_channels >= (MIN_CHANNELS_TIMED if timed else MIN_CHANNELS)
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
    )
