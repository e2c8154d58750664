"""Style attention for the arbitrary-style networks: the one attention function (PyTorch's fused
``scaled_dot_product_attention``, memory linear in the positions), SANet (Park & Lee, CVPR 2019) at relu4_1
and relu5_1, AdaAttN (Liu et al., ICCV 2021) and its parameter-free form (the target of its local feature
loss), and the shallow-to-deep keys AdaAttN attends with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from transferlab.fast.arbitrary import ops

# VGG19's layers AdaAttN's keys are built from, shallow to deep.
SHALLOW = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512, "relu5_1": 512}


def attend(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """``softmax(q kᵀ) v`` over positions, unscaled as SANet and AdaAttN define it: ``query`` ``[N, C, H, W]``,
    ``key`` ``[N or 1, C, h, w]``, ``value`` ``[N or 1, Cv, h, w]`` to ``[N, Cv, H, W]``. Through the fused
    kernel, so the ``HW x hw`` matrix is never held: memory grows linearly with the positions. The CPU's fused
    kernel takes only equal channel counts and channels at stride 1 (otherwise torch falls back to the full
    matrix): the narrower side is padded with zeros, which change neither ``q kᵀ`` nor the kept output
    channels, and each input is made contiguous with positions major."""
    n, _, h, w = query.shape
    cv = value.shape[1]
    width = max(query.shape[1], cv)

    def flat(x: Tensor) -> Tensor:  # [N, 1 head, positions, channels padded to width]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([x, x.new_zeros(*x.shape[:2], width - x.shape[2])], 2) if x.shape[2] < width else x.contiguous()
        return x.unsqueeze(1).expand(n, -1, -1, -1)

    out = F.scaled_dot_product_attention(flat(query), flat(key), flat(value), scale=1.0)
    # Contiguous: torch.export cannot prove the strides of the cut view when later ops check them.
    return out[:, 0, :, :cv].transpose(1, 2).reshape(n, cv, h, w).contiguous()


def normalized(feat: Tensor) -> Tensor:
    """Each channel to zero mean and unit standard deviation over space (``ops.mean_std``)."""
    mean, std = ops.mean_std(feat)
    return (feat - mean) / std


def attended_mean_std(query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
    """AdaAttN's attention-weighted mean and standard deviation of ``value`` per query position: the first
    and second moments in one attention (``value`` and its square side by side). The variance gets
    ``ops.EPS`` as ``ops.mean_std``'s does: the square root's gradient is infinite at 0."""
    moments = attend(query, key, torch.cat([value, value.square()], 1))
    mean, square = moments.chunk(2, 1)
    return mean, ((square - mean.square()).clamp_min(0) + ops.EPS).sqrt()


def shallow_key(feats: Mapping[str, Tensor], layer: str) -> Tensor:
    """AdaAttN's key at ``layer``: the normalized features of every VGG19 layer up to it (``SHALLOW``),
    resized (nearest) to ``layer``'s map, concatenated over channels."""
    size = feats[layer].shape[-2:]
    upto = SHALLOW[: SHALLOW.index(layer) + 1]
    return torch.cat([normalized(F.interpolate(feats[name], size=size, mode="nearest")) for name in upto], 1)


def key_channels(layer: str) -> int:
    return sum(CHANNELS[name] for name in SHALLOW[: SHALLOW.index(layer) + 1])


def adaattn_target(content: Mapping[str, Tensor], style: Mapping[str, Tensor], layer: str) -> Tensor:
    """AdaAttN without parameters at ``layer`` (the paper's local feature loss target): the content's
    normalized features scaled and shifted by the attention-weighted std and mean of the style's, the
    attention between the plain shallow-to-deep keys."""
    mean, std = attended_mean_std(shallow_key(content, layer), shallow_key(style, layer), style[layer])
    return std * normalized(content[layer]) + mean


class SANet(nn.Module):
    """Style-attentional module at one level: each content position attends over style positions by
    normalized-feature similarity (1x1 convolutions ``f``, ``g``); output = content + out(attended h(style))."""

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, content_feat: Tensor, style_feat: Tensor) -> Tensor:
        o = attend(self.f(normalized(content_feat)), self.g(normalized(style_feat)), self.h(style_feat))
        return content_feat + self.out(o)


class AdaAttN(nn.Module):
    """Adaptive attention normalization at one level: queries and keys are 1x1 convolutions of the
    shallow-to-deep keys (``shallow_key``), values of the style features; each content position gets the
    attention-weighted style mean and std: ``std * normalized(content) + mean``."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.f = nn.Conv2d(key_channels, key_channels, 1)
        self.g = nn.Conv2d(key_channels, key_channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)

    def forward(self, content: Tensor, style: Tensor, content_key: Tensor, style_key: Tensor) -> Tensor:
        mean, std = attended_mean_std(self.f(content_key), self.g(style_key), self.h(style))
        return std * normalized(content) + mean


def _merge() -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(512, 512, 3))


def _up_to(feat: Tensor, like: Tensor) -> Tensor:
    # To the other map's size, not x2: relu5_1 of a side that is not a multiple of 16 is floor(side / 16).
    return F.interpolate(feat, size=like.shape[-2:], mode="nearest")


class SANetTransform(nn.Module):
    """SANet as in the paper: a SANet at relu4_1 and one at relu5_1, the latter upsampled to relu4_1's map
    and added, then a 3x3 merge convolution (reflection padded): the decoder's relu4_1 input."""

    layers = ("relu4_1", "relu5_1")

    def __init__(self) -> None:
        super().__init__()
        self.sanet4_1, self.sanet5_1, self.merge = SANet(512), SANet(512), _merge()

    def forward(self, content: Mapping[str, Tensor], style: Mapping[str, Tensor]) -> dict[str, Tensor]:
        deep = _up_to(self.sanet5_1(content["relu5_1"], style["relu5_1"]), content["relu4_1"])
        return {"relu4_1": self.merge(self.sanet4_1(content["relu4_1"], style["relu4_1"]) + deep)}


class AdaAttNTransform(nn.Module):
    """AdaAttN as in the paper: at relu4_1 and relu5_1 merged as SANet's levels are (the decoder's relu4_1
    input), and at relu3_1 (concatenated into the decoder after its first upsampling: ``SkipDecoder``)."""

    layers = SHALLOW

    def __init__(self) -> None:
        super().__init__()
        self.levels = nn.ModuleDict(
            {layer: AdaAttN(CHANNELS[layer], key_channels(layer)) for layer in ("relu3_1", "relu4_1", "relu5_1")}
        )
        self.merge = _merge()

    def forward(self, content: Mapping[str, Tensor], style: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {
            layer: level(content[layer], style[layer], shallow_key(content, layer), shallow_key(style, layer))
            for layer, level in self.levels.items()
        }
        merged = self.merge(out["relu4_1"] + _up_to(out["relu5_1"], out["relu4_1"]))
        return {"relu4_1": merged, "relu3_1": out["relu3_1"]}


def needed_layers(arch: str) -> Sequence[str]:
    """The encoder layers ``arch``'s transform reads."""
    return {"adain": ("relu4_1",), "sanet": SANetTransform.layers, "adaattn": AdaAttNTransform.layers}[arch]
