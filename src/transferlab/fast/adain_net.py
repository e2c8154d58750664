"""The AdaIN / SANet network: frozen VGG19 encoder to relu4_1, a transform (AdaIN or SANet) and the
decoder; its training loss (content against the transformed target + mean/std style loss)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from transferlab import backbone
from transferlab.fast import adain as A


class AdaINNet(nn.Module):
    def __init__(self, weights: str | None = None, arch: str = "adain") -> None:
        super().__init__()
        if arch not in ("adain", "sanet"):
            raise ValueError(f"arch must be adain or sanet, got {arch!r}")
        features, norm = backbone.build_features("vgg19", weights)
        self.encoder = backbone.VGGFeatures(features, "vgg19", A.STYLE_LAYERS, norm)
        self.decoder = A.Decoder()
        self.sanet = A.SANet() if arch == "sanet" else None

    def encode(self, image: Tensor) -> dict[str, Tensor]:
        return {k: v.contiguous() for k, v in self.encoder(image).items()}

    def target(self, content_feat: Tensor, style_feat: Tensor) -> Tensor:
        if self.sanet is not None:
            return self.sanet(content_feat, style_feat)
        return A.adain(content_feat, style_feat)

    def forward(self, content: Tensor, style: Tensor, alpha: float = 1.0) -> Tensor:
        c = self.encode(content)["relu4_1"]
        t = self.target(c, self.encode(style)["relu4_1"])
        return self.decoder(alpha * t + (1 - alpha) * c)

    def loss(self, content: Tensor, style: Tensor, style_weight: float = 10.0) -> tuple[Tensor, Tensor]:
        """(content loss, style loss): MSE of relu4_1 of the output against the target, and mean/std loss."""
        s_feats = self.encode(style)
        t = self.target(self.encode(content)["relu4_1"], s_feats["relu4_1"])
        out_feats = self.encode(self.decoder(t))
        content_loss = torch.nn.functional.mse_loss(out_feats["relu4_1"], t)
        return content_loss, style_weight * A.mean_std_loss(out_feats, s_feats)
