"""The LightningModule of the arbitrary-style family: the AdaIN / SANet network trained on (content, style)
pairs, with a fixed grid of validation photos x styles in TensorBoard (fast/stylizer.py loads the trained
network from its checkpoint)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from transferlab import images, winograd
from transferlab.fast.arbitrary.networks import LOSS_TERMS, build
from transferlab.fast.train import TemporalTerm, ValidatedModule, with_log10
from transferlab.trainer import VISUALS

log = logging.getLogger(__name__)


class Pairs(Dataset):
    """Sample ``i``: (content crop ``i``, style crop ``i``), two index-seeded streams of equal length."""

    def __init__(self, contents: Dataset, styles: Dataset) -> None:
        if len(contents) != len(styles):
            raise ValueError("the content and style streams differ in length")
        self.contents, self.styles = contents, styles

    def __len__(self) -> int:
        return len(self.contents)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.contents[index], self.styles[index]


class AdaINModule(ValidatedModule):
    """The decoder (and the attention, when ``network["arch"]`` is sanet or adaattn; the light encoder and its
    distillation projection, when ``network["encoder"]`` is light; the whole transformer, when it is stytr)
    trained with Adam against the ``loss_weights`` (``LOSS_TERMS``: content, style, distill, identity,
    identity_features) times the network's terms (``AdaINNet.terms``, ``StyTrNet.terms``: distill only for a
    light encoder; the identity terms only computed where one of their weights is > 0).
    With ``temporal``, its term too (at its weight). Checkpoints hold VGG19 to relu4_1 too (14 MB; a light
    network's loss network, for resume): a checkpoint is the whole model, applied without weights.
    ``previews`` ``[K, 3, S, S]``: the styles of the validation grid (not saved)."""

    def __init__(
        self,
        network: dict[str, Any],
        loss_weights: tuple[float, ...],
        lr: float,
        betas: tuple[float, float],
        weight_decay: float,
        previews: Tensor | None = None,
        preview_size: int = 128,
        fast_convs: winograd.Mode = "auto",
        temporal: TemporalTerm | None = None,
    ) -> None:
        super().__init__()
        self.net = build(**network, fast_convs=fast_convs)  # how this process computes: not saved
        # Rebuilt without a download from a checkpoint: random init, then the saved encoder weights.
        spec = {**network, "weights": None, "normalization": self.net.normalization}
        self.save_hyperparameters(
            {
                "network": spec,
                "loss_weights": list(loss_weights),
                "lr": lr,
                "betas": list(betas),
                "weight_decay": weight_decay,
            }
        )
        self.register_buffer("previews", previews if previews is not None else torch.empty(0), persistent=False)
        self.preview_size = preview_size
        self.temporal = temporal
        self.val_tiles: list[Tensor] = []
        self.last_grid: Tensor | None = None  # the latest validation's grid (``grid``), on the CPU

    def terms(self, content: Tensor, style: Tensor, key: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        """The stylized batch and its loss terms, with ``loss`` their weighted sum (what training minimizes);
        with a temporal term, ``temporal`` (its motion drawn by ``key``, the style held)."""
        weights = dict(zip(LOSS_TERMS, self.hparams.loss_weights))
        output, terms = self.net.terms(content, style, weights["identity"] > 0 or weights["identity_features"] > 0)
        terms["loss"] = sum(w * terms[k] for k, w in weights.items() if k in terms)
        if self.temporal is not None:
            terms["temporal"] = self.temporal(lambda moved: self.net(moved, style), content, output, key)
            terms["loss"] = terms["loss"] + self.temporal.weight * terms["temporal"]
        return output, terms

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        _, terms = self.terms(*batch, self.draw_key())
        # under DDP, the mean over the processes' batches: the global batch's
        self.log_dict({f"train/{k}": v.detach() for k, v in with_log10(terms).items()}, on_step=True, sync_dist=True)
        self.log("loss", terms["loss"].detach(), prog_bar=True, logger=False)  # the bar: loss=..., val/loss=...
        return terms["loss"]

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        for style in self.previews:
            output, terms = self.terms(batch, style.expand_as(batch), -1 - batch_idx)  # the same motion each time
            self.val_terms.append({k: v.detach() for k, v in terms.items()})
            self.val_tiles.append(output.detach().float().clamp(0, 1).cpu())
        self.val_tiles.append(batch.detach().float().cpu())  # the photos: the grid's header row

    def end_validation(self, writer: Any | None) -> None:
        styles = self.previews.float().cpu()
        self.last_grid = preview_grid(self.val_tiles, styles, self.preview_size)
        if writer is not None:
            for tag, image in preview_cards(self.val_tiles, styles, self.preview_size).items():
                writer.add_image(tag, image, self.global_step)
        self.val_tiles.clear()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        trainable = [p for p in self.net.parameters() if p.requires_grad]  # VGG19 is frozen
        return torch.optim.Adam(trainable, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)


CARD_COLUMNS = 3  # tiles across in each of TensorBoard's images: about 128 px a tile in its card


def preview_rows(tiles: list[Tensor], styles: Tensor) -> list[list[Tensor]]:
    """A validation's images from its ``tiles`` (per batch: its stylization by each of the K ``styles``, then
    the batch) as rows: the photos (after a blank, where the others hold their style), then per style the
    style and its stylizations of the photos."""
    step = len(styles) + 1
    photos = torch.cat(tiles[len(styles) :: step])
    rows = [[torch.ones_like(photos[0]), *photos]]
    return rows + [[style, *torch.cat(tiles[j::step])] for j, style in enumerate(styles)]


def preview_cards(tiles: list[Tensor], styles: Tensor, size: int) -> dict[str, Tensor]:
    """TensorBoard's images of a validation by tag (``preview_rows``, each wrapped ``CARD_COLUMNS`` tiles a
    row, tiles ``size`` square): ``visuals/val/photos``, then ``visuals/val/style_<k>`` (the style first, then
    each photo's stylization where that photo is in the photos' image). One image of every photo and style
    left about 14-50 px a tile in TensorBoard's card; these keep about 128 px."""
    rows = preview_rows(tiles, styles)
    names = ["photos", *(f"style_{k:0{len(str(len(styles) - 1))}d}" for k in range(len(styles)))]
    return {
        f"{VISUALS}/val/{name}": make_grid(
            torch.stack([images.resize(t, (size, size)) for t in row]), nrow=CARD_COLUMNS, padding=2, pad_value=1.0
        )
        for name, row in zip(names, rows)
    }


def preview_grid(tiles: list[Tensor], styles: Tensor, size: int) -> Tensor:
    """A validation as one image, from its ``tiles`` (per batch: its stylization by each of the K ``styles``,
    then the batch): a header row (blank, then the photos), then per style the style and its stylizations
    of the photos, each tile ``size`` square. The photos across (8 by default) and the K styles down make it
    wider than tall, as a contact sheet's tile is (val_grid.png; TensorBoard gets ``preview_cards``)."""
    rows = preview_rows(tiles, styles)
    blocks = [images.resize(t, (size, size)) for row in rows for t in row]
    return make_grid(torch.stack(blocks), nrow=len(rows[0]), padding=2, pad_value=1.0)
