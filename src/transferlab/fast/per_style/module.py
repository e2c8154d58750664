"""The perceptual loss of Johnson et al. over our frozen VGG, and the LightningModule that trains a
transformation network with it (fast/stylizer.py loads the trained network from its checkpoint)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from transferlab import backbone, images, losses
from transferlab.fast.per_style.networks import TransformNet, build_network
from transferlab.fast.train import ValidatedModule


class PerceptualLoss(nn.Module):
    """Weighted content (features of the input photo), style (Gram targets of one style image,
    computed once, kept as buffers) and total-variation terms. ``forward`` returns every term:
    ``loss``, ``content``, ``style``, ``tv`` and ``content_<layer>`` / ``style_<layer>``."""

    def __init__(
        self,
        vgg: backbone.VGGFeatures,
        style: Tensor,
        content_layers: dict[str, float],
        style_layers: dict[str, float],
        weights: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.vgg, self.content_layers, self.style_layers = vgg, dict(content_layers), dict(style_layers)
        self.weights = weights
        with torch.no_grad():
            feats = vgg(style.unsqueeze(0) if style.dim() == 3 else style)
        for layer in self.style_layers:
            self.register_buffer(f"gram_{layer}", losses.gram_matrix(feats[layer]))

    def forward(self, output: Tensor, content: Tensor) -> dict[str, Tensor]:
        out = self.vgg(output)
        terms: dict[str, Tensor] = {}
        if self.content_layers:
            with torch.no_grad():
                target = self.vgg(content)
        total_c = output.new_zeros((), dtype=torch.float32)
        for layer, w in self.content_layers.items():
            terms[f"content_{layer}"] = losses.content_loss(out[layer].float(), target[layer].float())
            total_c = total_c + w * terms[f"content_{layer}"]
        total_s = output.new_zeros((), dtype=torch.float32)
        for layer, w in self.style_layers.items():
            gram = getattr(self, f"gram_{layer}")
            terms[f"style_{layer}"] = losses.style_loss(out[layer], gram.expand(output.shape[0], -1, -1))
            total_s = total_s + w * terms[f"style_{layer}"]
        tv = losses.total_variation(output.float())
        cw, sw, tw = self.weights
        terms.update(content=total_c, style=total_s, tv=tv, loss=cw * total_c + sw * total_s + tw * tv)
        return terms


def make_loss(
    arch: str,
    weights: str | None,
    pooling: str,
    normalization: str,
    feature_scale: float,
    style: Tensor,
    content_layers: dict[str, float],
    style_layers: dict[str, float],
    loss_weights: tuple[float, float, float],
    fast_convs: bool = True,
) -> PerceptualLoss:
    """``fast_convs``: VGG's deep convolutions as Winograd convolutions on CPU (``runtime.winograd``)."""
    features, norm = backbone.build_features(arch, weights, pooling, normalization, fast_convs)
    vgg = backbone.VGGFeatures(features, arch, [*content_layers, *style_layers], norm, feature_scale)
    return PerceptualLoss(vgg, style, content_layers, style_layers, loss_weights)


class FastStyleModule(ValidatedModule):
    """A transformation network trained against a frozen perceptual loss with Adam. Checkpoints hold
    the network, the Gram targets and the optimizer state, not the VGG weights (rebuilt from hparams)."""

    def __init__(
        self,
        network: dict[str, Any],
        loss: PerceptualLoss,
        lr: float,
        betas: tuple[float, float],
        weight_decay: float,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {"network": dict(network), "lr": lr, "betas": list(betas), "weight_decay": weight_decay}
        )
        self.network: TransformNet = build_network(**network)
        self.perceptual = loss
        self.val_outputs: list[Tensor] = []
        self.last_val_images: Tensor | None = None  # the latest validation's stylized photos, on the CPU

    def forward(self, image: Tensor) -> Tensor:
        return self.network(image)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        terms = self.perceptual(self.network(batch), batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=False, on_step=True)
        self.log("train/loss_bar", terms["loss"].detach(), prog_bar=True, logger=False)
        return terms["loss"]

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        output = self.network(batch)
        terms = self.perceptual(output, batch)
        self.val_terms.append({k: v.detach() for k, v in terms.items()})
        self.val_outputs.append(output.detach().float().cpu())

    def end_validation(self, writer: Any | None) -> None:
        self.last_val_images = torch.cat(self.val_outputs)
        if writer is not None:
            previews = torch.stack([images.fits_in(p, 256) for p in self.last_val_images])
            writer.add_images("val/stylized", previews, self.global_step)
        self.val_outputs.clear()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(
            self.network.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen VGG is rebuilt from its weights; 30-80 MB per checkpoint would be a copy of them.
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("perceptual.vgg.")
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        vgg = {f"perceptual.vgg.{k}": v for k, v in self.perceptual.vgg.state_dict().items()}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **vgg}
