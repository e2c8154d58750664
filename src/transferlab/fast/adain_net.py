"""The AdaIN / SANet network: frozen VGG19 encoder to relu4_1, a transform (AdaIN or SANet) and the
decoder; its training loss terms (content against the transformed target + mean/std style loss);
stylization with precomputed style codes (any image size); the whole pipeline as one exportable module."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.nn import functional as F

from transferlab import backbone, winograd
from transferlab.fast import adain as A

# VGG19 pools 3 times up to relu4_1 and the decoder upsamples 3 times: sides are padded to a multiple of this.
MULTIPLE = 8
# The smallest side stylize() takes: relu4_1 must be at least 2x2 (the decoder's reflection padding).
MIN_SIZE = 16
ARCHS = ("adain", "sanet")


def normalization_name(norm: backbone.Normalization) -> str:
    """The name (``imagenet``, ``caffe``) of a resolved normalization, to rebuild it from a checkpoint."""
    for name, known in backbone.NORMALIZATIONS.items():
        if known == norm:
            return name
    raise ValueError(f"normalization {norm} is not one of {', '.join(backbone.NORMALIZATIONS)}")


class AdaINNet(nn.Module):
    """``style_layers`` (``{layer: weight}`` up to relu4_1, or a list: weight 1 each) are the layers of
    the style loss; ``normalization``/``pooling`` as in ``backbone.build_features``."""

    def __init__(
        self,
        weights: str | None = None,
        arch: str = "adain",
        normalization: str = "auto",
        pooling: str = "max",
        style_layers: Mapping[str, float] | tuple[str, ...] = A.STYLE_LAYERS,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be adain or sanet, got {arch!r}")
        self.style_layers = (
            dict(style_layers) if isinstance(style_layers, Mapping) else dict.fromkeys(style_layers, 1.0)
        )
        features, norm = backbone.build_features("vgg19", weights, pooling, normalization)
        self.normalization = normalization_name(norm)
        self.encoder = backbone.VGGFeatures(features, "vgg19", [*self.style_layers, "relu4_1"], norm)
        self.decoder = A.Decoder()
        self.sanet = A.SANet() if arch == "sanet" else None

    def encode(self, image: Tensor) -> dict[str, Tensor]:
        return {k: v.contiguous() for k, v in self.encoder(image).items()}

    def target(self, content_feat: Tensor, style_feat: Tensor) -> Tensor:
        return self.transform(content_feat, A.style_code(style_feat, keep_features=self.sanet is not None))

    def forward(self, content: Tensor, style: Tensor, alpha: float = 1.0) -> Tensor:
        """Decoded, unclamped; sides must be multiples of ``MULTIPLE`` (``stylize`` takes any size)."""
        c = self.encode(content)["relu4_1"]
        t = self.target(c, self.encode(style)["relu4_1"])
        return self.decoder(alpha * t + (1 - alpha) * c)

    def terms(self, content: Tensor, style: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The decoded output and the unweighted loss terms: ``content`` (MSE of relu4_1 of the output
        against the target), ``style`` (``adain.mean_std_loss`` with ``style_layers``' weights) and
        ``style_<layer>`` per layer."""
        s_feats = self.encode(style)
        t = self.target(self.encode(content)["relu4_1"], s_feats["relu4_1"])
        output = self.decoder(t)
        out_feats = self.encode(output)
        per_layer = A.mean_std_terms(out_feats, s_feats, self.style_layers)
        terms = {"content": F.mse_loss(out_feats["relu4_1"], t)}
        terms["style"] = sum(w * per_layer[layer] for layer, w in self.style_layers.items())
        terms.update({f"style_{layer}": v for layer, v in per_layer.items()})
        return output, terms

    def code(self, style: Tensor) -> A.StyleCode:
        """A style's statistics (``[1, 3, h, w]`` in [0, 1], sides >= MIN_SIZE), once per style; with
        SANet, its relu4_1 map too."""
        return A.style_code(self.encode(style)["relu4_1"], keep_features=self.sanet is not None)

    def transform(self, content_feat: Tensor, code: A.StyleCode) -> Tensor:
        if self.sanet is not None:
            return self.sanet(content_feat, code.features)
        return A.adain_code(content_feat, code)

    def stylize(
        self,
        content: Tensor,
        codes: list[A.StyleCode],
        alpha: float = 1.0,
        masks: list[Tensor] | None = None,
        strength: Tensor | None = None,
    ) -> Tensor:
        """``[N, 3, H, W]`` in [0, 1] to the stylized images in [0, 1], any H, W >= MIN_SIZE: the content is
        edge-padded to a multiple of 8 and the output cropped back. ``masks`` (one per code) and
        ``strength`` are ``[1 or N, 1, h, w]`` maps of any size, resized to the content
        (``adain.stylize_features``: alpha, masks, strength)."""
        h, w = content.shape[-2:]
        pad = (0, _padded(w) - w, 0, _padded(h) - h)

        def fit(m: Tensor) -> Tensor:
            return F.pad(F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False), pad, mode="replicate")

        feat = self.encode(F.pad(content, pad, mode="replicate"))["relu4_1"]
        t = A.stylize_features(
            feat,
            codes,
            alpha,
            None if masks is None else [fit(m) for m in masks],
            None if strength is None else fit(strength),
            self.transform,
        )
        # Cropped by negative padding: torch.export proves the size (padded - pad = h) where it
        # cannot prove that a slice [:h] fits.
        return F.pad(self.decoder(t), tuple(-p for p in pad)).clamp(0, 1)


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
