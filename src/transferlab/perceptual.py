"""The one perceptual-loss composition (Gatys et al., 2016; Johnson et al., 2016): the loss that
stylize and the video wing optimize an image against, and that train_fast trains a network with.

A ``PerceptualLoss`` holds a frozen encoder (``features.Encoder``: VGG or another torchvision network;
one pass per evaluation, only to the deepest layer in use), its targets as buffers and the weights of its
terms. The targets:

- the Gram matrices of each style at each style layer (``set_styles``: computed once per style and
  scale by ``style_grams``), blended by the styles' weights, each within its mask (``set_content``);
- the content's features at the content layers (``set_content``: once per content image), or, when
  training, the features of the photos the network was given (``content`` of ``forward``).

The terms, in losses.py's definitions (``parts``, unweighted by the term weights):
``content_<layer>`` and ``style_<layer>`` per layer; ``content`` and ``style``, their sums weighted by
the layers' weights; ``tv``, the total variation of the image. ``forward`` weighs them into the named
terms ``loss/content``, ``loss/style``, ``loss/tv`` (at a positive weight), the ``extra`` terms a wing
adds (the video wing's temporal term), their sum ``loss/total``, and ``style/loss_<layer>`` (each
layer's share of ``loss/style``).

AdaIN's loss (fast/arbitrary) is not this composition: its content target is the AdaIN output and its
style term matches means and standard deviations (fast/arbitrary/ops.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from transferlab import images
from transferlab.losses import content_loss, gram_matrix, style_loss, total_variation

if TYPE_CHECKING:
    from transferlab.features import Encoder
    from transferlab.groups import LossWeights

Term = Callable[[Tensor], Tensor]  # the image [B, 3, H, W] -> a weighted loss term (a scalar)


def style_grams(
    encoder: Encoder, styles: Sequence[Tensor], layers: Iterable[str], factor: float = 1.0
) -> list[dict[str, Tensor]]:
    """Per style ``[3, h, w]``, its Gram matrix ``[1, C, C]`` at each layer, the style resized by ``factor``."""
    with torch.no_grad():
        features = [
            encoder(images.resize_long_side(x, max(1, round(max(x.shape[-2:]) * factor))).unsqueeze(0)) for x in styles
        ]
    return [{layer: gram_matrix(f[layer]) for layer in layers} for f in features]


def _fp32(t: Tensor) -> Tensor:
    """At least fp32 (a no-op on fp32): bf16 features under autocast are compared in fp32."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class PerceptualLoss(nn.Module):
    """Weighted content, style and total-variation terms of an image over a frozen encoder, plus any
    ``extra`` terms (name -> function of the image). Set the style targets with ``set_styles`` and, to
    compare with a fixed content, the content targets with ``set_content``, before calling it."""

    def __init__(
        self,
        encoder: Encoder,
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        *,
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        extra: Mapping[str, Term] | None = None,
    ) -> None:
        super().__init__()
        missing = [layer for layer in (*content_layers, *style_layers) if layer not in encoder.layers]
        if missing:
            raise ValueError(f"the encoder does not return layers {missing}; build it with them")
        self.encoder = encoder
        self.content_layers, self.style_layers = dict(content_layers), dict(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.extra = dict(extra or {})
        self.style_weights: list[float] = []  # the blend of the styles, one weight per style

    @classmethod
    def of(
        cls,
        encoder: Encoder,
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        weights: LossWeights,
    ) -> PerceptualLoss:
        """The composition with the ``loss`` group's content, style and total-variation weights."""
        return cls(
            encoder,
            content_layers,
            style_layers,
            content_weight=weights.content,
            style_weight=weights.style,
            tv_weight=weights.tv,
        )

    def like(self, extra: Mapping[str, Term] | None = None) -> PerceptualLoss:
        """A composition with this one's encoder, layers and weights, no targets yet, and ``extra`` terms."""
        return PerceptualLoss(
            self.encoder,
            self.content_layers,
            self.style_layers,
            content_weight=self.content_weight,
            style_weight=self.style_weight,
            tv_weight=self.tv_weight,
            extra=extra,
        )

    def set_styles(self, grams: Sequence[Mapping[str, Tensor]], weights: Sequence[float] = (1.0,)) -> None:
        """The style targets: each style's ``style_grams``, blended by ``weights`` (one per style)."""
        if len(grams) != len(weights) or (not grams and self.style_layers):
            raise ValueError(f"{len(grams)} styles' Gram matrices for {len(weights)} style weights")
        self.style_weights = list(weights)
        for layer in self.style_layers:
            stacked = grams[0][layer] if len(grams) == 1 else torch.cat([g[layer] for g in grams])
            # Persistent: a train_fast checkpoint holds its style's Gram matrices.
            self.register_buffer(f"gram_{layer}", stacked)

    def set_content(self, content: Tensor, masks: Sequence[Tensor] | None = None) -> None:
        """The content targets: the features of ``content`` ``[1, 3, H, W]`` at the content layers; and,
        with ``masks`` (``[1, H, W]`` in [0, 1] per style, where and how much it applies), each style's
        mask resized to each style layer's feature map. Not saved in checkpoints (rebuilt from the inputs)."""
        with torch.no_grad():
            features = self.encoder(content)
        for layer in self.content_layers:
            self.register_buffer(f"content_{layer}", features[layer], persistent=False)
        for layer in self.style_layers:
            hw = tuple(features[layer].shape[-2:])
            resized = None if masks is None else torch.stack([images.resize(m, hw) for m in masks])
            self.register_buffer(f"mask_{layer}", resized, persistent=False)

    def gram(self, style: int, layer: str) -> Tensor:
        """Style ``style``'s target Gram matrix at ``layer``, ``[1, C, C]``."""
        return getattr(self, f"gram_{layer}")[style : style + 1]

    def mask(self, style: int, layer: str) -> Tensor | None:
        """Where style ``style`` applies at ``layer``'s resolution, ``[1, 1, h, w]``; None: everywhere."""
        masks = getattr(self, f"mask_{layer}", None)
        return None if masks is None else masks[style : style + 1]

    def parts(self, image: Tensor, content: Tensor | None = None) -> dict[str, Tensor]:
        """The unweighted terms of ``image`` ``[B, 3, H, W]``; ``content``: the photos it should keep (a
        batch like ``image``, compared feature by feature), else the targets of ``set_content``."""
        if not self.style_weights and self.style_layers:
            raise ValueError("the perceptual loss has no style targets: call set_styles first")
        features = self.encoder(image)
        targets = self._content_targets(content)
        parts: dict[str, Tensor] = {}
        content_sum = style_sum = image.new_zeros((), dtype=torch.float32)
        for layer, w in self.content_layers.items():
            parts[f"content_{layer}"] = content_loss(_fp32(features[layer]), _fp32(targets[layer]))
            content_sum = content_sum + w * parts[f"content_{layer}"]
        for layer, w in self.style_layers.items():
            parts[f"style_{layer}"] = self._style_term(features[layer], layer)
            style_sum = style_sum + w * parts[f"style_{layer}"]
        # At weight 0 the total variation is only reported: no graph for a term that does not count.
        tv = total_variation(_fp32(image if self.tv_weight > 0 else image.detach()))
        return parts | {"content": content_sum, "style": style_sum, "tv": tv}

    def _content_targets(self, content: Tensor | None) -> Mapping[str, Tensor]:
        if content is not None:
            if not self.content_layers:
                return {}
            with torch.no_grad():
                return self.encoder(content)
        targets = {layer: getattr(self, f"content_{layer}", None) for layer in self.content_layers}
        if any(t is None for t in targets.values()):
            raise ValueError("the perceptual loss has no content targets: call set_content or pass content")
        return targets

    def _style_term(self, features: Tensor, layer: str) -> Tensor:
        """The blend of the styles' Gram distances at ``layer``, each within its mask."""
        batch = features.shape[0]
        return sum(
            w * style_loss(features, self.gram(i, layer).expand(batch, -1, -1), self.mask(i, layer))
            for i, w in enumerate(self.style_weights)
        )

    def weighted(self, parts: Mapping[str, Tensor], image: Tensor) -> dict[str, Tensor]:
        """The named terms of the module docstring, from ``parts(image)``."""
        terms = {"loss/content": self.content_weight * parts["content"]}
        if self.style_layers:  # none where a text prompt is the only style
            terms["loss/style"] = self.style_weight * parts["style"]
        if self.tv_weight > 0:  # at weight 0 (the default) a flat zero chart would lead the loss group
            terms["loss/tv"] = self.tv_weight * parts["tv"]
        terms.update({name: term(image) for name, term in self.extra.items()})
        terms["loss/total"] = sum(terms.values())
        terms.update(
            {
                f"style/loss_{layer}": self.style_weight * (w * parts[f"style_{layer}"])
                for layer, w in self.style_layers.items()
            }
        )
        return terms

    def forward(self, image: Tensor, content: Tensor | None = None) -> dict[str, Tensor]:
        return self.weighted(self.parts(image, content), image)
