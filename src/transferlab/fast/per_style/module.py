"""The perceptual loss of Johnson et al. over our frozen VGG (the floor's composition, transferlab/perceptual.py),
and the LightningModule that trains a transformation network with it (fast/stylizer.py loads the trained
network from its checkpoint)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.utils import make_grid

from transferlab import backbone, images, winograd
from transferlab.fast.per_style.networks import TransformNet, build_network
from transferlab.fast.train import TemporalTerm, ValidatedModule, with_log10
from transferlab.perceptual import PerceptualLoss, style_grams
from transferlab.textloss import TextLoss
from transferlab.trainer import VISUALS

FROZEN = ("perceptual.encoder.", "text.")  # the state the task rebuilds, left out of checkpoints
PREVIEW_TILE = 256  # px: the long side of each photo in TensorBoard's images (data.val_size's default)


def make_loss(
    arch: str,
    weights: str | None,
    pooling: str,
    normalization: str,
    feature_scale: float,
    style: Tensor | None,
    content_layers: dict[str, float],
    style_layers: dict[str, float],
    loss_weights: tuple[float, float, float],
    fast_convs: winograd.Mode = "auto",
) -> PerceptualLoss:
    """The loss of one style image ``[3, H, W]`` (None: no style term, a prompt's run), its Gram targets
    computed once; ``loss_weights``:
    content, style and total-variation weights; ``fast_convs``: VGG's deep convolutions as Winograd
    convolutions on CPU (``runtime.winograd``)."""
    features, norm = backbone.build_features(arch, weights, pooling, normalization, fast_convs)
    vgg = backbone.VGGFeatures(features, arch, [*content_layers, *style_layers], norm, feature_scale)
    content_weight, style_weight, tv_weight = loss_weights
    loss = PerceptualLoss(
        vgg, content_layers, style_layers, content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight
    )
    if style is None:
        loss.set_styles([], [])
    else:
        loss.set_styles(style_grams(vgg, [style], style_layers))
    return loss


class FastStyleModule(ValidatedModule):
    """A transformation network trained against a frozen perceptual loss with Adam, plus ``temporal``'s
    term and a prompt's ``text`` terms when given. Checkpoints hold the network, the Gram targets and the
    optimizer state, not the VGG or CLIP weights (rebuilt from hparams)."""

    def __init__(
        self,
        network: dict[str, Any],
        loss: PerceptualLoss,
        lr: float,
        betas: tuple[float, float],
        weight_decay: float,
        temporal: TemporalTerm | None = None,
        text: TextLoss | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {"network": dict(network), "lr": lr, "betas": list(betas), "weight_decay": weight_decay}
        )
        self.network: TransformNet = build_network(**network)
        self.perceptual = loss
        self.temporal = temporal
        self.text = text
        self.val_outputs: list[Tensor] = []
        self.val_photos: list[Tensor] = []
        self.last_val_images: Tensor | None = None  # the latest validation's stylized photos, on the CPU

    def forward(self, image: Tensor) -> Tensor:
        return self.network(image)

    def terms(self, output: Tensor, photos: Tensor, key: int = 0) -> dict[str, Tensor]:
        """The loss of ``output`` (``network(photos)``) under train_fast's metric names: ``loss`` (the total)
        and the unweighted ``content``, ``style``, ``tv``, ``content_<layer>`` and ``style_<layer>`` where
        there is more than one such layer (one layer's term is the sum itself: the same curve twice),
        ``temporal`` with a temporal term (its motion drawn by ``key``), and ``text_direction`` and
        ``text_patch`` with a prompt (textloss.py)."""
        parts = self.perceptual.parts(output, photos)
        loss = self.perceptual.weighted(parts, output)["loss/total"]
        for kind in ("content", "style"):
            per_layer = [k for k in parts if k.startswith(f"{kind}_")]
            if len(per_layer) == 1:
                del parts[per_layer[0]]
        if self.text is not None:
            text_parts = self.text.parts(output, photos)
            parts |= text_parts
            loss = loss + self.text.weighted(text_parts)
        if self.temporal is not None:
            parts["temporal"] = self.temporal(self.network, photos, output, key)
            loss = loss + self.temporal.weight * parts["temporal"]
        return parts | {"loss": loss}

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        terms = self.terms(self.network(batch), batch, self.draw_key())
        # under DDP, the mean over the processes' batches: the global batch's
        self.log_dict({f"train/{k}": v.detach() for k, v in with_log10(terms).items()}, on_step=True, sync_dist=True)
        self.log("loss", terms["loss"].detach(), prog_bar=True, logger=False)  # the bar: loss=..., val/loss=...
        return terms["loss"]

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        output = self.network(batch)
        terms = self.terms(output, batch, -1 - batch_idx)  # the same motion at every validation
        self.val_terms.append({k: v.detach() for k, v in terms.items()})
        self.val_outputs.append(output.detach().float().cpu())
        self.val_photos.append(batch.detach().float().cpu())

    def end_validation(self, writer: Any | None) -> None:
        self.last_val_images = torch.cat(self.val_outputs)
        if writer is not None:
            for tag, image in previews(torch.cat(self.val_photos), self.last_val_images).items():
                writer.add_image(tag, image, self.global_step)
        self.val_outputs.clear()
        self.val_photos.clear()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(
            self.network.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen VGG and CLIP are rebuilt from their weights; a checkpoint would hold a copy of them.
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(FROZEN)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        frozen = {k: v for k, v in self.state_dict().items() if k.startswith(FROZEN)}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **frozen}


def previews(photos: Tensor, stylized: Tensor) -> dict[str, Tensor]:
    """TensorBoard's images of a validation by tag: one per validation photo, ``visuals/val/<index>`` (zero-padded,
    so that TensorBoard's order is the photos'), the photo left of its stylization, each fit in ``PREVIEW_TILE``
    px. Two tiles across keep about 200 px a photo in TensorBoard's card at its default width, where a grid of 8
    photos and their stylizations left about 100 px and one 8:1 strip of them 46 px."""
    digits = len(str(len(photos) - 1))
    return {
        f"{VISUALS}/val/{i:0{digits}d}": make_grid(
            torch.stack([images.fits_in(photo, PREVIEW_TILE), images.fits_in(out, PREVIEW_TILE)]),
            nrow=2,
            padding=2,
            pad_value=1.0,
        )
        for i, (photo, out) in enumerate(zip(photos, stylized))
    }
