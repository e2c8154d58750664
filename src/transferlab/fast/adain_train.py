"""The train_adain task: a decoder for the frozen VGG19 encoder (AdaIN, Huang & Belongie, 2017), or a light
encoder and its decoder (distilled against VGG19), trained on a folder of content photos and a folder of
style images; TensorBoard with a fixed grid of validation photos x styles, checkpoints (exact resume) and
metrics.json in the run dir. Also the loader of a trained network from its checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset
from torchvision.utils import make_grid

from transferlab import checkpoints, images, memory
from transferlab.errors import WeightsError
from transferlab.fast import data
from transferlab.fast.adain_net import MIN_SIZE, TRAINING_ONLY, AdaINNet
from transferlab.fast.adain_settings import CHECKPOINT, TrainAdaINSettings
from transferlab.fast.train import StepData, fit
from transferlab.files import atomic_write

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


class AdaINModule(pl.LightningModule):
    """The decoder (and SANet, when ``network["arch"]`` is sanet; the light encoder and its distillation
    projection, when ``network["encoder"]`` is light) trained with Adam against ``content_weight * content +
    style_weight * style + distill_weight * distill`` (``AdaINNet.terms``; distill only for a light encoder).
    Checkpoints hold VGG19 to relu4_1 too (14 MB; a light network's loss network, for resume): a checkpoint
    is the whole model, applied without weights.
    ``previews`` ``[K, 3, S, S]``: the styles of the validation grid (not saved)."""

    def __init__(
        self,
        network: dict[str, Any],
        loss_weights: tuple[float, float, float],
        lr: float,
        betas: tuple[float, float],
        weight_decay: float,
        previews: Tensor | None = None,
        preview_size: int = 128,
    ) -> None:
        super().__init__()
        self.net = AdaINNet(**network)
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
        self.val_terms: list[dict[str, Tensor]] = []
        self.val_tiles: list[Tensor] = []

    def _loss(self, content: Tensor, style: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        output, terms = self.net.terms(content, style)
        weights = zip(("content", "style", "distill"), self.hparams.loss_weights)
        terms["loss"] = sum(w * terms[k] for k, w in weights if k in terms)
        return output, terms

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        _, terms = self._loss(*batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, on_step=True)
        self.log("train/loss_bar", terms["loss"].detach(), prog_bar=True, logger=False)
        return terms["loss"]

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        for style in self.previews:
            output, terms = self._loss(batch, style.expand_as(batch))
            self.val_terms.append({k: v.detach() for k, v in terms.items()})
            self.val_tiles.append(output.detach().float().clamp(0, 1).cpu())
        self.val_tiles.append(batch.detach().float().cpu())  # the photos, first in each grid row

    def on_validation_epoch_end(self) -> None:
        if not self.val_terms:
            return
        n = len(self.val_terms)
        for key in self.val_terms[0]:
            self.log(f"val/{key}", sum(t[key] for t in self.val_terms) / n, prog_bar=key == "loss")
        logger = self.logger
        if logger is not None and hasattr(logger, "experiment") and not self.trainer.sanity_checking:
            logger.experiment.add_image("val/grid", self.grid(), self.global_step)
        self.val_terms.clear()
        self.val_tiles.clear()

    def grid(self) -> Tensor:
        """One image: a header row (blank, then the K styles), then per validation photo the photo and
        its K stylizations, each tile ``preview_size`` square."""
        k = len(self.previews)
        blocks, rows = [], []
        step = k + 1  # per validation batch: K outputs, then the batch itself
        for i in range(0, len(self.val_tiles), step):
            outputs, photos = self.val_tiles[i : i + k], self.val_tiles[i + k]
            for j in range(len(photos)):
                rows.append([photos[j], *(o[j] for o in outputs)])
        header = [torch.ones_like(rows[0][0]), *self.previews.float().cpu()]
        for row in [header, *rows]:
            blocks.extend(images.resize(t, (self.preview_size, self.preview_size)) for t in row)
        return make_grid(torch.stack(blocks), nrow=k + 1, padding=2, pad_value=1.0)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        trainable = [p for p in self.net.parameters() if p.requires_grad]  # VGG19 is frozen
        return torch.optim.Adam(trainable, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)


def load_adain(path: str | Path, key: str = "ckpt_path", loss_net: bool = False) -> AdaINNet:
    """The trained network of a train_adain checkpoint (eval mode); a WeightsError in one line for any
    other file (a train_fast checkpoint, a plain state dict, weights that do not fit). A light network is
    rebuilt without its training-only parts (``TRAINING_ONLY``: no VGG19) unless ``loss_net`` (to score it)."""
    checkpoint = checkpoints.load(path, key, CHECKPOINT)
    hp = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    spec = hp.get("network")
    if not isinstance(spec, dict) or "loss_weights" not in hp or "state_dict" not in checkpoint:
        raise WeightsError(
            f"{key}={path} is not a train_adain checkpoint (no AdaIN hyperparameters); give {CHECKPOINT}"
        )
    try:
        net = AdaINNet(**spec, loss_net=loss_net)
        prefix = "net."
        skip = () if loss_net else (f"{prefix}{TRAINING_ONLY}.",)
        state = checkpoint["state_dict"].items()
        net.load_state_dict({k[len(prefix) :]: v for k, v in state if k.startswith(prefix) and not k.startswith(skip)})
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(
            f"{key}={path}: its weights do not fit the network it names ({spec}): {first}; give {CHECKPOINT}"
        ) from None
    return net.eval()


def run(cfg: DictConfig, output_dir: Path) -> float:
    s = TrainAdaINSettings.from_cfg(cfg)
    pl.seed_everything(s.training.seed, workers=True, verbose=False)
    train_files, val_files = data.split(data.list_images(s.photos.root), s.photos.val_count, s.training.seed)
    style_files = data.list_images(s.styles, "task.styles")
    n = s.training.steps * s.photos.batch_size
    pairs = Pairs(
        data.ContentCrops(train_files, s.photos.crop, n, s.training.seed, s.photos.resize, s.photos.max_bad_fraction),
        data.ContentCrops(
            style_files, s.photos.crop, n, s.training.seed + 1, s.style_resize, s.photos.max_bad_fraction
        ),
    )
    previews = data.validation_batch(style_files[: s.preview_styles], s.photos.val_size)
    module = AdaINModule(
        {"arch": s.arch, "weights": s.weights, "normalization": s.normalization, "pooling": s.pooling}
        | {"style_layers": s.style_layers, "encoder": s.encoder, "width": s.width},
        (s.content_weight, s.style_weight, s.distill_weight),
        s.training.lr,
        s.training.betas,
        s.training.weight_decay,
        previews,
        s.preview_size,
    )
    # The probe stands for both the content and the style crops.
    memory.check_training(
        lambda x: module._loss(x, x)[1]["loss"],
        module,
        s.photos.batch_size * s.photos.crop**2,
        s.training.trainer.accelerator,
        f"data.crop={s.photos.crop} with data.batch_size={s.photos.batch_size}",
        MIN_SIZE,
    )
    val = TensorDataset(data.validation_batch(val_files, s.photos.val_size))
    log.info(
        "train_adain: %d training photos, %d validation photos, %d styles (%d in the preview grid)",
        len(train_files),
        len(val_files),
        len(style_files),
        len(previews),
    )
    datamodule = StepData(pairs, val, s.photos.batch_size, s.photos.num_workers)
    metrics = fit(module, datamodule, s.training, s.hparams, output_dir, "train_adain")
    with atomic_write(output_dir / "val_files.txt", "w") as f:
        f.write("".join(f"{p}\n" for p in val_files))
    return metrics["val/loss"]
