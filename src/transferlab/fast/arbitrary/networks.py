"""The arbitrary-style network and its parts (a light encoder, the decoder mirroring VGG19): the frozen VGG19
encoder (to relu4_1 for AdaIN, relu5_1 for the attention archs; or a light one to relu4_1, trained, in the
manner of collaborative distillation, Wang et al. 2020), a transform (AdaIN; SANet, Park & Lee 2019; AdaAttN,
Liu et al. 2021: ``attention.py``) and the mirrored decoder; its training loss terms (each paper's content
term + the mean/std style loss at the frozen VGG19's layers; SANet's identity terms; a distillation term for a
light encoder); stylization with precomputed style codes (any image size); the whole pipeline as one
exportable module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from transferlab import backbone, winograd
from transferlab.fast.arbitrary import attention, ops

# VGG19 pools 3 times up to relu4_1 and the decoder upsamples 3 times: sides are padded to a multiple of this.
MULTIPLE = 8
# The smallest side stylize() takes: relu4_1 must be at least 2x2 (the decoder's reflection padding).
MIN_SIZE = 16
# The smallest side an exported pipeline takes, by arch: relu5_1 (1/16 of the side) at least 2x2, where the
# attention archs read it; torch.export's shape guards refuse a 1-px map there (eager takes MIN_SIZE).
EXPORT_MIN_SIZES = {"adain": MIN_SIZE, "sanet": 32, "adaattn": 32, "stytr": MIN_SIZE}
ARCHS = ("adain", "sanet", "adaattn", "stytr")  # stytr: the transformer of stytr.py (``build``)
ARCH_NAMES = {"adain": "AdaIN", "sanet": "SANet", "adaattn": "AdaAttN", "stytr": "transformer (StyTr)"}
# The layers of each arch's content term, fixed by its paper (layers.content names them): AdaIN's target at
# relu4_1; SANet's normalized features at relu4_1 and relu5_1; AdaAttN's local feature loss at relu2_1-relu5_1
# (its reference code's layers). The transformer's are free (layers.content).
CONTENT_LAYERS = {
    "adain": ("relu4_1",),
    "sanet": ("relu4_1", "relu5_1"),
    "adaattn": ("relu2_1", "relu3_1", "relu4_1", "relu5_1"),
}
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
    stage as ``LightEncoder``'s): nearest upsampling, reflection padding, no normalization. ``skip`` > 0:
    that many channels are concatenated to the features after the first upsampling (AdaAttN's relu3_1
    level), the next convolution taking them too."""

    def __init__(self, width: float = 1.0, convs: tuple[int, ...] = VGG_CONVS, skip: int = 0) -> None:
        super().__init__()
        channels = (3, *stage_channels(width))
        layers: list[nn.Module] = []
        for stage in reversed(range(len(convs))):
            cin = channels[stage + 1] + (skip if stage == len(convs) - 2 else 0)
            for _ in range(convs[stage] - 1):
                layers += _conv(cin, channels[stage + 1])
                cin = channels[stage + 1]
            layers += _conv(cin, channels[stage])
            if stage:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                if stage == len(convs) - 1:
                    self.split = len(layers)  # where the skip features join
        self.net = nn.Sequential(*layers[:-1])  # RGB out: no ReLU after the last convolution
        # Mid grey: an untrained decoder's output starts inside [0, 1], not clamped away at 0.
        nn.init.constant_(self.net[-1].bias, 0.5)

    def forward(self, feat: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is None:
            return self.net(feat)
        return self.net[self.split :](torch.cat([self.net[: self.split](feat), skip], 1))


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
    """``style_layers`` (``{layer: weight}``, or a list: weight 1 each) are the layers of the style loss (up to
    relu4_1 for AdaIN, relu5_1 for the attention archs); ``content_layers`` those of the content term, which
    the arch fixes (``CONTENT_LAYERS``; None: those, equal weights); ``normalization``/``pooling``/``fast_convs``
    as in ``backbone.build_features``. ``arch``: ``adain``, ``sanet`` or ``adaattn`` (``attention.py``).
    ``encoder``: ``vgg19`` (frozen, also the loss network) or ``light`` (``LightEncoder`` of ``width`` with
    ``LIGHT_CONVS``, trained, VGG19 the loss network; AdaIN only); ``loss_net=False`` leaves a light network's
    training-only parts out (apply, export)."""

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
        content_layers: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if arch not in CONTENT_LAYERS:
            raise ValueError(f"arch must be one of {', '.join(CONTENT_LAYERS)} (stytr: build), got {arch!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be vgg19 or light, got {encoder!r}")
        if encoder == "light" and arch != "adain":
            raise ValueError(f"{arch} attends in VGG19's feature spaces: no light encoder")
        self.arch = arch
        self.style_layers = (
            dict(style_layers) if isinstance(style_layers, Mapping) else dict.fromkeys(style_layers, 1.0)
        )
        fixed = CONTENT_LAYERS[arch]
        self.content_layers = dict(content_layers or dict.fromkeys(fixed, 1 / len(fixed)))
        if sorted(self.content_layers) != sorted(fixed):
            raise ValueError(f"{arch}'s content layers are {', '.join(fixed)}, got {', '.join(self.content_layers)}")
        self.normalization = normalization
        vgg = None
        if encoder == "vgg19" or loss_net:
            features, norm = backbone.build_features("vgg19", weights, pooling, normalization, fast_convs)
            self.normalization = normalization_name(norm)
            layers = dict.fromkeys([*self.style_layers, *fixed, *attention.needed_layers(arch)])
            vgg = backbone.VGGFeatures(features, "vgg19", list(layers), norm)
        self.teacher = None
        if encoder == "vgg19":
            self.encoder = vgg
            self.decoder = Decoder(skip=attention.CHANNELS["relu3_1"] if arch == "adaattn" else 0)
        else:
            self.encoder = LightEncoder(width, LIGHT_CONVS)
            self.decoder = Decoder(width, LIGHT_CONVS)
            if vgg is not None:
                self.teacher = Teacher(vgg, self.encoder.channels)
        transforms = {"sanet": attention.SANetTransform, "adaattn": attention.AdaAttNTransform}
        self.attention = transforms[arch]() if arch in transforms else None

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
        """The frozen VGG19's features at the style layers and those the arch reads."""
        return {k: v.contiguous() for k, v in self.vgg(image).items()}

    def code_of(self, feats: dict[str, Tensor]) -> ops.StyleCode:
        """The style code of a style's encoder features (``encode``)."""
        keep = None if self.attention is None else {k: feats[k] for k in attention.needed_layers(self.arch)}
        return ops.style_code(feats["relu4_1"], keep)

    def code(self, style: Tensor) -> ops.StyleCode:
        """A style's statistics (``[1, 3, h, w]`` in [0, 1], sides >= MIN_SIZE), once per style; with
        attention, the feature maps it attends over too."""
        return self.code_of(self.encode(style))

    def transform(
        self, content: dict[str, Tensor], code: ops.StyleCode, content_stats: tuple[Tensor, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """The decoder's inputs by level (relu4_1; AdaAttN's relu3_1 too): the content's encoder features
        aligned to the style ``code``; with AdaIN, ``content_stats`` (mean, std) replace the features' own
        statistics (a video's statistics over the whole clip: ``ops.mean_std_over``)."""
        if self.attention is not None:
            if content_stats is not None:
                raise ValueError(f"{self.arch} attends over the style: it takes no shared content statistics")
            return self.attention(content, code.features)
        if content_stats is None:
            return {"relu4_1": ops.adain_code(content["relu4_1"], code)}
        return {"relu4_1": ops.adain_stats(content["relu4_1"], code.mean, code.std, *content_stats)}

    def decode(self, levels: dict[str, Tensor]) -> Tensor:
        """The image of the decoder's inputs (``transform``'s), unclamped."""
        return self.decoder(levels["relu4_1"], levels.get("relu3_1"))

    def forward(self, content: Tensor, style: Tensor, alpha: float = 1.0) -> Tensor:
        """Decoded, unclamped; sides must be multiples of ``MULTIPLE`` (``stylize`` takes any size)."""
        feats = self.encode(content)
        levels = self.transform(feats, self.code(style))
        return self.decode({k: alpha * t + (1 - alpha) * feats[k] for k, t in levels.items()})

    def terms(self, content: Tensor, style: Tensor, identity: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """The decoded output and the unweighted loss terms, all at the frozen VGG19's layers: ``content``
        (``content_terms`` weighted by ``content_layers``), ``style`` (``ops.mean_std_terms`` weighted by
        ``style_layers``), ``style_<layer>`` per layer; with a light encoder ``distill`` is MSE(the projected
        light relu4_1 of the content, VGG19's); with ``identity``, ``identity_terms``."""
        c_vgg, s_vgg = self.loss_features(content), self.loss_features(style)
        c, s = (self.encode(content), self.encode(style)) if self.light else (c_vgg, s_vgg)
        output = self.decode(self.transform(c, self.code_of(s)))
        out_feats = self.loss_features(output)
        terms = {}
        if self.light:
            terms["distill"] = F.mse_loss(self.teacher.project(c["relu4_1"]), c_vgg["relu4_1"])
        per_content = self.content_terms(out_feats, c_vgg, s_vgg)
        per_layer = ops.mean_std_terms(out_feats, s_vgg, self.style_layers)
        terms["content"] = sum(w * per_content[layer] for layer, w in self.content_layers.items())
        terms["style"] = sum(w * per_layer[layer] for layer, w in self.style_layers.items())
        terms.update({f"style_{layer}": v for layer, v in per_layer.items()})
        if identity:
            terms.update(self.identity_terms(torch.cat([content, style]), {k: torch.cat([c[k], s[k]]) for k in c}))
        return output, terms

    def content_terms(
        self, out: dict[str, Tensor], content: dict[str, Tensor], style: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """The content term per layer, as each paper defines it (VGG19 features of the output, content and
        style): AdaIN, MSE(relu4_1, AdaIN of the content's to the style's; with a light encoder too, the VGG
        decoder's objective); SANet, MSE of the mean-variance normalized features; AdaAttN, its local feature
        loss: MSE(features, parameter-free AdaAttN of the content's and style's)."""
        if self.arch == "adain":
            return {"relu4_1": F.mse_loss(out["relu4_1"], ops.adain(content["relu4_1"], style["relu4_1"]))}
        if self.arch == "sanet":
            return {
                layer: F.mse_loss(attention.normalized(out[layer]), attention.normalized(content[layer]))
                for layer in self.content_layers
            }
        return {
            layer: F.mse_loss(out[layer], attention.adaattn_target(content, style, layer))
            for layer in self.content_layers
        }

    def identity_terms(self, images: Tensor, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """SANet's identity losses, for any arch: each image (the content and style batches together) stylized
        by itself must give itself back: ``identity`` = MSE(output, image), ``identity_features`` = the
        ``style_layers``-weighted MSE of their VGG19 features. ``feats`` are the images' encoder features."""
        same = self.decode(self.transform(feats, self.code_of(feats)))
        out, ref = self.loss_features(same), feats if not self.light else self.loss_features(images)
        per_layer = {layer: F.mse_loss(out[layer], ref[layer]) for layer in self.style_layers}
        return {
            "identity": F.mse_loss(same, images),
            "identity_features": sum(w * per_layer[layer] for layer, w in self.style_layers.items()),
        }

    def padded(self, content: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
        """``content`` edge-padded to a multiple of ``MULTIPLE`` and the padding (left, right, top, bottom)."""
        h, w = content.shape[-2:]
        pad = (0, _padded(w) - w, 0, _padded(h) - h)
        return F.pad(content, pad, mode="replicate"), pad

    def content_features(self, content: Tensor) -> Tensor:
        """The relu4_1 features ``stylize`` aligns with AdaIN: of ``content`` padded as ``padded`` does."""
        return self.encode(self.padded(content)[0])["relu4_1"]

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
        ``strength`` are ``[1 or N, 1, h, w]`` maps of any size, resized to the content; every decoder input
        is blended with the content's own features at its level (``ops.blend_targets``: alpha, masks,
        strength); ``content_stats`` as ``transform`` takes them."""
        size = content.shape[-2:]
        padded, pad = self.padded(content)
        masks = None if masks is None else [ops.fit_map(m, size, pad) for m in masks]
        strength = None if strength is None else ops.fit_map(strength, size, pad)
        feats = self.encode(padded)
        targets = [self.transform(feats, code, content_stats) for code in codes]
        levels = {
            level: ops.blend_targets(feats[level], [t[level] for t in targets], alpha, masks, strength)
            for level in targets[0]
        }
        # Cropped by negative padding: torch.export proves the size (padded - pad = h) where it
        # cannot prove that a slice [:h] fits.
        return F.pad(self.decode(levels), tuple(-p for p in pad)).clamp(0, 1)


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
    """The whole pipeline for export: ``(content [N, 3, H, W], style [1, 3, h, w])`` in [0, 1]
    to the stylized content in [0, 1] (encoder, the arch's transform with ``alpha``, decoder); the encoder's
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
