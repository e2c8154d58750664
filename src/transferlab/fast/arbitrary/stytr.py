"""A transformer arbitrary-style network in the manner of StyTr² (Deng et al., CVPR 2022), light enough to train
on a CPU: content and style cut into 8x8 patches and embedded (one strided convolution each), a content encoder
whose positional encoding is computed from the content itself (CAPE), a style encoder, a decoder in which
content queries attend to the style's tokens, and a CNN upsampler (AdaIN's VGG-mirrored decoder) back to the
image. Every attention is ``scaled_dot_product_attention``: PyTorch's memory grows linearly with the positions
(its blockwise kernels), and no learned table fixes the size: any image size runs (padded to the patch multiple
and cropped back). The loss network (frozen VGG19) is training-only.

Differences from the paper's code, by design: CAPE pools the content's patch embedding to a fixed grid and
resizes the encoding to the content's own grid (the paper's resizes it to the style's, and its output reshape
assumes square images); no dropout (exact resume, and a few thousand CPU steps do not overfit); ``width``
scales the paper's 512 channels and its upsampler, with ``LAYERS`` layers per encoder and decoder (paper: 3)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from transferlab import backbone, winograd
from transferlab.fast.arbitrary import ops
from transferlab.fast.arbitrary.networks import LIGHT_CONVS, MULTIPLE, Decoder, normalization_name, stage_channels

PATCH = MULTIPLE  # patch side: the upsampler doubles three times, as AdaIN's decoder
LAYERS = 2  # per content encoder, style encoder and decoder
HEADS = 4  # at most; fewer where the width's channels do not divide by 4
FFN = 4  # the feed-forward layers' width, x the channels (paper: 2048 for 512)
# CAPE: the content's patch embedding is averaged to this grid (the paper's 18), encoded by a 1x1 convolution
# and resized to the content's grid: the same picture at another size gets the same encoding, stretched.
CAPE_GRID = 18
CONTENT_LAYERS = ("relu4_1",)


class Attention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention`` (tokens ``[N, L, C]``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        def split(x: Tensor) -> Tensor:  # [N, L, C] -> [N, heads, L, C / heads]
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(self.q(query)), split(self.k(key)), split(self.v(value)))
        return self.out(o.transpose(1, 2).flatten(2))


def _with(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


def _ffn(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, FFN * dim), nn.ReLU(), nn.Linear(FFN * dim, dim))


class EncoderLayer(nn.Module):
    """Self-attention (the position added to queries and keys, not values), then a feed-forward layer; each
    with a residual and a LayerNorm after it (the paper's post-norm)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn, self.ffn = Attention(dim, heads), _ffn(dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor | None) -> Tensor:
        q = _with(x, pos)
        x = self.norm1(x + self.attn(q, q, x))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    """Self-attention over the content queries, cross-attention of the content queries to the style's tokens
    (style keys and values), a feed-forward layer; post-norm."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attn, self.cross, self.ffn = Attention(dim, heads), Attention(dim, heads), _ffn(dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: Tensor, memory: Tensor, pos: Tensor) -> Tensor:
        q = x + pos
        x = self.norm1(x + self.self_attn(q, q, x))
        x = self.norm2(x + self.cross(x + pos, memory, memory))
        return self.norm3(x + self.ffn(x))


def normalized(feat: Tensor) -> Tensor:
    """Features with each channel's spatial mean and std normalized away (the content loss's comparison)."""
    mean, std = ops.mean_std(feat)
    return (feat - mean) / std


def tokens(feat: Tensor) -> Tensor:
    """``[N, C, h, w]`` to ``[N, h * w, C]``."""
    return feat.flatten(2).transpose(1, 2)


class StyTrNet(nn.Module):
    """The transformer stylizer: ``width`` in (0, 1] scales the paper's 512 channels (``stage_channels``;
    heads: ``HEADS`` or fewer, dividing the channels) and its upsampler (AdaIN's decoder with ``LIGHT_CONVS``).
    ``content_layers`` and ``style_layers`` (``{layer: weight}`` up to relu5_1, or a list: weight 1 each) are
    the loss's; ``weights``/``normalization``/``pooling``/``fast_convs`` the loss network's (frozen VGG19, built
    only with ``loss_net``). ``arch`` and ``encoder`` are the family's spec keys: stytr and vgg19 only."""

    def __init__(
        self,
        weights: str | None = None,
        normalization: str = "auto",
        pooling: str = "max",
        style_layers: Mapping[str, float] | tuple[str, ...] = ops.STYLE_LAYERS,
        content_layers: Mapping[str, float] | tuple[str, ...] = CONTENT_LAYERS,
        width: float = 0.25,
        loss_net: bool = True,
        fast_convs: winograd.Mode = "auto",
        arch: str = "stytr",
        encoder: str = "vgg19",
    ) -> None:
        super().__init__()
        if arch != "stytr" or encoder != "vgg19":
            raise ValueError(f"StyTrNet is arch stytr with VGG19 as its loss network, got {arch!r}, {encoder!r}")
        self.style_layers, self.content_layers = _weighted(style_layers), _weighted(content_layers)
        dim = stage_channels(width)[-1]
        heads = math.gcd(dim, HEADS)
        self.cape = nn.Conv2d(dim, dim, 1)
        self.content_encoder = nn.ModuleList(EncoderLayer(dim, heads) for _ in range(LAYERS))
        self.style_encoder = nn.ModuleList(EncoderLayer(dim, heads) for _ in range(LAYERS))
        self.decoder = nn.ModuleList(DecoderLayer(dim, heads) for _ in range(LAYERS))
        self.decoder_norm = nn.LayerNorm(dim)
        for p in self.parameters():  # the paper's (DETR's) initialization of the transformer
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.embed = nn.Conv2d(3, dim, PATCH, stride=PATCH)  # content's and style's, as the paper's
        self.upsampler = Decoder(width, LIGHT_CONVS)
        self.normalization = normalization
        self.teacher = None  # networks.TRAINING_ONLY: the loss network, left out of apply and export
        if loss_net:
            features, norm = backbone.build_features("vgg19", weights, pooling, normalization, fast_convs)
            self.normalization = normalization_name(norm)
            layers = [*self.style_layers, *self.content_layers]
            self.teacher = backbone.VGGFeatures(features, "vgg19", layers, norm)

    def content_tokens(self, content: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """The encoded content tokens, their CAPE positions (``[N, L, C]`` each) and the patch grid's size."""
        embedded = self.embed(content)
        grid = embedded.shape[-2:]
        pooled = F.adaptive_avg_pool2d(embedded, CAPE_GRID)
        pos = tokens(F.interpolate(self.cape(pooled), size=grid, mode="bilinear", align_corners=False))
        x = tokens(embedded)
        for layer in self.content_encoder:
            x = layer(x, pos)
        return x, pos, grid

    def style_tokens(self, image: Tensor) -> Tensor:
        """The style encoder's tokens of ``image`` (no positions: a style is a texture, not a layout)."""
        x = tokens(self.embed(image))
        for layer in self.style_encoder:
            x = layer(x, None)
        return x

    def decode(self, content: tuple[Tensor, Tensor, tuple[int, int]], memory: Tensor) -> Tensor:
        """The content tokens (``content_tokens``) attending to ``memory`` (style tokens, batch 1 or N), as a
        feature map ``[N, C, h, w]`` for the upsampler."""
        x, pos, grid = content
        memory = memory.expand(x.shape[0], -1, -1)
        for layer in self.decoder:
            x = layer(x, memory, pos)
        return self.decoder_norm(x).transpose(1, 2).unflatten(2, grid)

    def forward(self, content: Tensor, style: Tensor, alpha: float = 1.0) -> Tensor:
        """Decoded, unclamped; sides must be multiples of ``PATCH`` (``stylize`` takes any size)."""
        return self.stylize_padded(content, [self.code(style)], alpha)

    def code(self, style: Tensor) -> ops.StyleCode:
        """A style's encoded tokens (``features``, ``[1, L, C]``; its mean and std over the tokens too), once
        per style; any size (padded to the patch multiple)."""
        encoded = self.style_tokens(pad_to_patches(style)[0])
        mean, std = ops.mean_std(encoded.transpose(1, 2).unsqueeze(-1))
        return ops.StyleCode(mean, std, encoded)

    def stylize_padded(
        self,
        content: Tensor,
        codes: list[ops.StyleCode],
        alpha: float = 1.0,
        masks: list[Tensor] | None = None,
        strength: Tensor | None = None,
    ) -> Tensor:
        """``stylize`` of content whose sides are multiples of ``PATCH``, unclamped. Alpha, masks and the
        strength map blend, before the upsampler, with the decoder's features of the content attending to
        itself (what the identity loss trains to give back the content): alpha 0 is that reconstruction."""
        c = self.content_tokens(content)
        if alpha == 1 and masks is None and strength is None and len(codes) == 1:
            return self.upsampler(self.decode(c, codes[0].features))
        itself = self.decode(c, self.style_tokens(content))
        t = ops.blend_targets(itself, [self.decode(c, code.features) for code in codes], alpha, masks, strength)
        return self.upsampler(t)

    def stylize(
        self,
        content: Tensor,
        codes: list[ops.StyleCode],
        alpha: float = 1.0,
        masks: list[Tensor] | None = None,
        strength: Tensor | None = None,
        content_stats: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``[N, 3, H, W]`` in [0, 1] to the stylized images in [0, 1], any H, W >= MIN_SIZE: edge-padded to a
        multiple of ``PATCH`` and cropped back; ``masks`` (one per code) and ``strength`` ``[1 or N, 1, h, w]``
        of any size, as ``AdaINNet.stylize`` takes them. No ``content_stats``: the content attends to the style,
        it is not normalized by its statistics."""
        if content_stats is not None:
            raise ValueError("StyTr attends to the style: it takes no shared content statistics")
        padded, pad = pad_to_patches(content)
        size = content.shape[-2:]
        masks = None if masks is None else [ops.fit_map(m, size, pad) for m in masks]
        strength = None if strength is None else ops.fit_map(strength, size, pad)
        out = self.stylize_padded(padded, codes, alpha, masks, strength)
        return F.pad(out, tuple(-p for p in pad)).clamp(0, 1)

    def loss_features(self, image: Tensor) -> dict[str, Tensor]:
        """The frozen VGG19's features at the loss's layers."""
        if self.teacher is None:
            raise ValueError("this network was built without its loss network (loss_net=False)")
        return {k: v.contiguous() for k, v in self.teacher(image).items()}

    def terms(self, content: Tensor, style: Tensor, identity: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """The decoded output and the unweighted loss terms, at the frozen VGG19's layers: ``content`` (MSE of
        the output's channel-normalized features against the content's, weighted by ``content_layers``),
        ``style`` (``ops.mean_std_terms`` weighted by ``style_layers``), ``style_<layer>`` per layer; with
        ``identity``, ``identity`` (MSE of the content and the style, each stylized by itself, against itself:
        the mean of the two) and ``identity_features`` (the same at the style layers, weighted)."""
        c, memory = self.content_tokens(content), self.style_tokens(style)
        output = self.upsampler(self.decode(c, memory))
        c_feats, s_feats = self.loss_features(content), self.loss_features(style)
        if identity:
            same_content = self.upsampler(self.decode(c, self.style_tokens(content)))
            same_style = self.upsampler(self.decode(self.content_tokens(style), memory))
            same_s_feats = self.loss_features(same_style)
            both = self.loss_features(torch.cat([output, same_content]))  # one pass of the loss network for two
            out_feats, same_c_feats = ({k: v.chunk(2)[i] for k, v in both.items()} for i in (0, 1))
        else:
            out_feats = self.loss_features(output)
        per_layer = ops.mean_std_terms(out_feats, s_feats, self.style_layers)
        terms = {
            "content": sum(
                w * F.mse_loss(normalized(out_feats[k]), normalized(c_feats[k])) for k, w in self.content_layers.items()
            ),
            "style": sum(w * per_layer[k] for k, w in self.style_layers.items()),
            **{f"style_{k}": v for k, v in per_layer.items()},
        }
        if identity:
            # The mean over the content and the style, as AdaINNet.identity_terms takes them (one batch there).
            terms["identity"] = (F.mse_loss(same_content, content) + F.mse_loss(same_style, style)) / 2
            terms["identity_features"] = sum(
                w * (F.mse_loss(same_c_feats[k], c_feats[k]) + F.mse_loss(same_s_feats[k], s_feats[k])) / 2
                for k, w in self.style_layers.items()
            )
        return output, terms


def pad_to_patches(image: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
    """``image`` edge-padded on the right and bottom to a multiple of ``PATCH``, and the padding (F.pad's order)."""
    h, w = image.shape[-2:]
    pad = (0, -w % PATCH, 0, -h % PATCH)
    return F.pad(image, pad, mode="replicate"), pad


def _weighted(layers: Mapping[str, float] | tuple[str, ...]) -> dict[str, float]:
    return dict(layers) if isinstance(layers, Mapping) else dict.fromkeys(layers, 1.0)
