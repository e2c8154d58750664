"""The AdaIN / SANet network and its parts (a light encoder, the decoder mirroring VGG19, SANet, Park & Lee
2019): an encoder to relu4_1 (VGG19's, frozen; or a light one, trained, in the manner of
collaborative distillation, Wang et al. 2020), a transform (AdaIN or SANet) and the mirrored decoder; its
training loss terms (content against the AdaIN target + mean/std style loss, both at the frozen VGG19's
layers; a distillation term for a light encoder); stylization with precomputed style codes (any image
size); the whole pipeline as one exportable module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from transferlab import backbone, winograd
from transferlab.fast.arbitrary import ops

# VGG19 pools 3 times up to relu4_1 and the decoder upsamples 3 times: sides are padded to a multiple of this.
MULTIPLE = 8
# The smallest side stylize() takes: relu4_1 must be at least 2x2 (the decoder's reflection padding).
MIN_SIZE = 16
ARCHS = ("adain", "sanet", "stytr")  # stytr: the transformer of stytr.py (``build``)
ENCODERS = ("vgg19", "light")
# The loss terms train_adain weighs (loss.<term>_weight), in order; a network's ``terms`` gives those of its own
# (distill: a light encoder's; identity and identity_features: the transformer's).
LOSS_TERMS = ("content", "style", "distill", "identity", "identity_features")
# The light encoder's 3x3 convolutions per stage: VGG19's (2, 2, 4, 1) less the second full- and half-resolution
# convolutions and two of stage 3's (and their mirrors in the decoder): measured at width 0.25 in ONNX Runtime,
# one thread, 1024 px, VGG19's counts take 2.2x the time (0.71 s against 0.33 s; docs/adain.md).
LIGHT_CONVS = (1, 1, 2, 1)
# The attribute of the parts only training needs (a light network's VGG19 loss network and distillation
# projection): not built for apply/export, not loaded from a checkpoint.
TRAINING_ONLY = "teacher"


# VGG19's 3x3 convolutions per stage (between its pools) up to relu4_1, and its channels per stage.
VGG_CONVS = (2, 2, 4, 1)
VGG_CHANNELS = (64, 128, 256, 512)


def stage_channels(width: float = 1.0) -> tuple[int, ...]:
    """VGG19's channels per stage scaled by ``width`` in (0, 1] (at least 1 each). Checked here too, not only
    at the door: a checkpoint names its width, and a huge one would allocate before its weights are read."""
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width}")
    return tuple(max(1, round(c * width)) for c in VGG_CHANNELS)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    # Reflection padding avoids the border artefacts zero padding gives a generator.
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU()]


class LightEncoder(nn.Module):
    """A trained encoder shaped like VGG19 to relu4_1: the same three 2x2 max pools (so the same multiple-of-8
    sides), ``stage_channels(width)``, ``convs`` 3x3 convolutions per stage (zero padding, as VGG)."""

    def __init__(self, width: float, convs: tuple[int, ...]) -> None:
        super().__init__()
        channels = (3, *stage_channels(width))
        layers: list[nn.Module] = []
        for stage, n in enumerate(convs):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for i in range(n):
                layers += [nn.Conv2d(channels[stage + (i > 0)], channels[stage + 1], 3, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.channels = channels[-1]

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)


class Decoder(nn.Module):
    """Mirror of an encoder shaped like VGG19 to relu4_1 (by default VGG19's own; ``width`` and ``convs`` per
    stage as ``LightEncoder``'s): nearest upsampling, reflection padding, no normalization."""

    def __init__(self, width: float = 1.0, convs: tuple[int, ...] = VGG_CONVS) -> None:
        super().__init__()
        channels = (3, *stage_channels(width))
        layers: list[nn.Module] = []
        for stage in reversed(range(len(convs))):
            for _ in range(convs[stage] - 1):
                layers += _conv(channels[stage + 1], channels[stage + 1])
            layers += _conv(channels[stage + 1], channels[stage])
            if stage:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.net = nn.Sequential(*layers[:-1])  # RGB out: no ReLU after the last convolution
        # Mid grey: an untrained decoder's output starts inside [0, 1], not clamped away at 0.
        nn.init.constant_(self.net[-1].bias, 0.5)

    def forward(self, feat: Tensor) -> Tensor:
        return self.net(feat)


class SANet(nn.Module):
    """Style-attentional module (Park & Lee, 2019): each content position attends over style positions
    by normalized-feature similarity; output = content + conv(attended style)."""

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, content_feat: Tensor, style_feat: Tensor) -> Tensor:
        n, c, h, w = content_feat.shape
        q = self.f(_normalize(content_feat)).flatten(2).transpose(1, 2)  # N, HcWc, C
        k = self.g(_normalize(style_feat)).flatten(2)  # N, C, HsWs
        v = self.h(style_feat).flatten(2).transpose(1, 2)  # N, HsWs, C
        attn = torch.softmax(q @ k, dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(n, c, h, w)
        return content_feat + self.out(o)


def _normalize(feat: Tensor) -> Tensor:
    mean, std = ops.mean_std(feat)
    return (feat - mean) / std


def normalization_name(norm: backbone.Normalization) -> str:
    """The name (``imagenet``, ``caffe``) of a resolved normalization, to rebuild it from a checkpoint."""
    for name, known in backbone.NORMALIZATIONS.items():
        if known == norm:
            return name
    raise ValueError(f"normalization {norm} is not one of {', '.join(backbone.NORMALIZATIONS)}")


class Teacher(nn.Module):
    """A light network's training-only parts: the frozen VGG19 loss network and a 1x1 projection of the light
    relu4_1 features onto VGG19's (the distillation term keeps the light features VGG-like, so that their
    channel statistics, which AdaIN swaps, carry style as VGG19's do)."""

    def __init__(self, vgg: backbone.VGGFeatures, channels: int) -> None:
        super().__init__()
        self.vgg = vgg
        self.project = nn.Conv2d(channels, VGG_CHANNELS[-1], 1)


class AdaINNet(nn.Module):
    """``style_layers`` (``{layer: weight}`` up to relu4_1, or a list: weight 1 each) are the layers of
    the style loss; ``normalization``/``pooling``/``fast_convs`` as in ``backbone.build_features``. ``encoder``:
    ``vgg19`` (frozen, also the loss network) or ``light`` (``LightEncoder`` of ``width`` with ``LIGHT_CONVS``,
    trained, VGG19 the loss network); ``loss_net=False`` leaves a light network's training-only parts out (apply,
    export)."""

    def __init__(
        self,
        weights: str | None = None,
        arch: str = "adain",
        normalization: str = "auto",
        pooling: str = "max",
        style_layers: Mapping[str, float] | tuple[str, ...] = ops.STYLE_LAYERS,
        encoder: str = "vgg19",
        width: float = 1.0,
        loss_net: bool = True,
        fast_convs: winograd.Mode = "auto",
    ) -> None:
        super().__init__()
        if arch not in ("adain", "sanet"):
            raise ValueError(f"arch must be adain or sanet, got {arch!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be vgg19 or light, got {encoder!r}")
        if encoder == "light" and arch == "sanet":
            raise ValueError("SANet runs in VGG19's relu4_1 space: no light encoder")
        self.style_layers = (
            dict(style_layers) if isinstance(style_layers, Mapping) else dict.fromkeys(style_layers, 1.0)
        )
        self.normalization = normalization
        vgg = None
        if encoder == "vgg19" or loss_net:
            features, norm = backbone.build_features("vgg19", weights, pooling, normalization, fast_convs)
            self.normalization = normalization_name(norm)
            vgg = backbone.VGGFeatures(features, "vgg19", [*self.style_layers, "relu4_1"], norm)
        self.teacher = None
        if encoder == "vgg19":
            self.encoder = vgg
            self.decoder = Decoder()
        else:
            self.encoder = LightEncoder(width, LIGHT_CONVS)
            self.decoder = Decoder(width, LIGHT_CONVS)
            if vgg is not None:
                self.teacher = Teacher(vgg, self.encoder.channels)
        self.sanet = SANet() if arch == "sanet" else None

    @property
    def light(self) -> bool:
        return isinstance(self.encoder, LightEncoder)

    def encode(self, image: Tensor) -> dict[str, Tensor]:
        """The encoder's features by layer name (a light encoder's: relu4_1 only)."""
        return {"relu4_1": self.encoder(image)} if self.light else self.loss_features(image)

    @property
    def vgg(self) -> backbone.VGGFeatures:
        """The frozen VGG19 of the loss (the encoder itself, or a light network's teacher)."""
        if self.light and self.teacher is None:
            raise ValueError("this light network was built without its loss network (loss_net=False)")
        return self.teacher.vgg if self.light else self.encoder

    def loss_features(self, image: Tensor) -> dict[str, Tensor]:
        """The frozen VGG19's features at the style layers and relu4_1."""
        return {k: v.contiguous() for k, v in self.vgg(image).items()}

    def target(self, content_feat: Tensor, style_feat: Tensor) -> Tensor:
        return self.transform(content_feat, ops.style_code(style_feat, keep_features=self.sanet is not None))

    def forward(self, content: Tensor, style: Tensor, alpha: float = 1.0) -> Tensor:
        """Decoded, unclamped; sides must be multiples of ``MULTIPLE`` (``stylize`` takes any size)."""
        c = self.encode(content)["relu4_1"]
        t = self.target(c, self.encode(style)["relu4_1"])
        return self.decoder(alpha * t + (1 - alpha) * c)

    def terms(self, content: Tensor, style: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The decoded output and the unweighted loss terms, all at the frozen VGG19's layers: ``content``
        (MSE of relu4_1 of the output against the target: the transform of the content's relu4_1 to the
        style's), ``style`` (``ops.mean_std_terms`` weighted by ``style_layers``' weights), ``style_<layer>`` per
        layer; with a light encoder the target is AdaIN in VGG19's space (the VGG decoder's objective) and
        ``distill`` is MSE(the projected light relu4_1 of the content, VGG19's)."""
        c_vgg, s_vgg = self.loss_features(content)["relu4_1"], self.loss_features(style)
        terms = {}
        if self.light:
            c = self.encode(content)["relu4_1"]
            output = self.decoder(self.target(c, self.encode(style)["relu4_1"]))
            t = ops.adain(c_vgg, s_vgg["relu4_1"])
            terms["distill"] = F.mse_loss(self.teacher.project(c), c_vgg)
        else:
            t = self.target(c_vgg, s_vgg["relu4_1"])
            output = self.decoder(t)
        out_feats = self.loss_features(output)
        per_layer = ops.mean_std_terms(out_feats, s_vgg, self.style_layers)
        terms["content"] = F.mse_loss(out_feats["relu4_1"], t)
        terms["style"] = sum(w * per_layer[layer] for layer, w in self.style_layers.items())
        terms.update({f"style_{layer}": v for layer, v in per_layer.items()})
        return output, terms

    def code(self, style: Tensor) -> ops.StyleCode:
        """A style's statistics (``[1, 3, h, w]`` in [0, 1], sides >= MIN_SIZE), once per style; with
        SANet, its relu4_1 map too."""
        return ops.style_code(self.encode(style)["relu4_1"], keep_features=self.sanet is not None)

    def transform(
        self, content_feat: Tensor, code: ops.StyleCode, content_stats: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """The content features aligned to the style ``code``; with AdaIN, ``content_stats`` (mean, std) replace
        the features' own statistics (a video's statistics over the whole clip: ``ops.mean_std_over``)."""
        if self.sanet is not None:
            if content_stats is not None:
                raise ValueError("SANet attends over the style: it takes no shared content statistics")
            return self.sanet(content_feat, code.features)
        if content_stats is None:
            return ops.adain_code(content_feat, code)
        return ops.adain_stats(content_feat, code.mean, code.std, *content_stats)

    def content_features(self, content: Tensor) -> Tensor:
        """The relu4_1 features ``stylize`` aligns: of ``content`` edge-padded to a multiple of ``MULTIPLE``."""
        h, w = content.shape[-2:]
        return self.encode(F.pad(content, (0, _padded(w) - w, 0, _padded(h) - h), mode="replicate"))["relu4_1"]

    def stylize(
        self,
        content: Tensor,
        codes: list[ops.StyleCode],
        alpha: float = 1.0,
        masks: list[Tensor] | None = None,
        strength: Tensor | None = None,
        content_stats: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``[N, 3, H, W]`` in [0, 1] to the stylized images in [0, 1], any H, W >= MIN_SIZE: the content is
        edge-padded to a multiple of 8 and the output cropped back. ``masks`` (one per code) and
        ``strength`` are ``[1 or N, 1, h, w]`` maps of any size, resized to the content
        (``ops.stylize_features``: alpha, masks, strength); ``content_stats`` as ``transform`` takes them."""
        h, w = content.shape[-2:]
        pad = (0, _padded(w) - w, 0, _padded(h) - h)

        def fit(m: Tensor) -> Tensor:
            return F.pad(F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False), pad, mode="replicate")

        t = ops.stylize_features(
            self.content_features(content),
            codes,
            alpha,
            None if masks is None else [fit(m) for m in masks],
            None if strength is None else fit(strength),
            lambda feat, code: self.transform(feat, code, content_stats),
        )
        # Cropped by negative padding: torch.export proves the size (padded - pad = h) where it
        # cannot prove that a slice [:h] fits.
        return F.pad(self.decoder(t), tuple(-p for p in pad)).clamp(0, 1)


def build(arch: str, **spec: Any) -> nn.Module:
    """The network of ``arch`` (one of ``ARCHS``) from its checkpoint spec: ``AdaINNet``, or for stytr the
    transformer (``stytr.StyTrNet``, the same methods: code, stylize, terms, forward)."""
    if arch == "stytr":
        from transferlab.fast.arbitrary.stytr import StyTrNet  # it builds on this module's decoder

        return StyTrNet(arch=arch, **spec)
    return AdaINNet(arch=arch, **spec)


def _padded(side: int) -> int:
    return MULTIPLE * ((side + MULTIPLE - 1) // MULTIPLE)


class Pipeline(nn.Module):
    """The whole AdaIN pipeline for export: ``(content [N, 3, H, W], style [1, 3, h, w])`` in [0, 1]
    to the stylized content in [0, 1] (encoder, AdaIN or SANet with ``alpha``, decoder); the encoder's
    Winograd convolutions become plain ones (the exporters trace standard ops)."""

    def __init__(self, net: AdaINNet, alpha: float = 1.0) -> None:
        super().__init__()
        self.net, self.alpha = net, float(alpha)
        _plain_convs(self.net)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        return self.net.stylize(content, [self.net.code(style)], self.alpha)


def _plain_convs(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, winograd.WinogradConv2d):
            conv = nn.Conv2d(child.in_channels, child.out_channels, 3, padding=1, bias=child.bias is not None)
            conv.weight, conv.bias = child.weight, child.bias
            setattr(module, name, conv)
        else:
            _plain_convs(child)
