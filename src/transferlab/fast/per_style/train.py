"""The train_fast task: a feed-forward network for one style, trained on a folder of content photos
(Johnson et al., 2016). Writes TensorBoard logs, checkpoints/, metrics.json, val_files.txt and
val_final/ (the validation photos stylized by the final network, in val_files.txt's order; a sweep's
contact sheet shows them a row per job) into the run dir."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from torch.utils.data import TensorDataset

from transferlab import fetch, images, sweep
from transferlab.fast import data
from transferlab.fast.per_style.module import FastStyleModule, make_loss
from transferlab.fast.settings import TrainSettings
from transferlab.fast.train import StepData, fit
from transferlab.files import atomic_write
from transferlab.perceptual import PerceptualLoss

log = logging.getLogger(__name__)


def perceptual_loss(s: TrainSettings) -> PerceptualLoss:
    """The run's loss: its VGG (random weights are drawn from torch's generator: ``run`` seeds it just
    before) with the Gram targets of its style image."""
    style = images.load_image(fetch.resolve(s.style, "task.style"), s.style_size)
    return make_loss(
        s.arch,
        s.weights,
        s.pooling,
        s.normalization,
        s.feature_scale,
        style,
        s.content_layers,
        s.style_layers,
        (s.content_weight, s.style_weight, s.tv_weight),
    )


def run(cfg: DictConfig, output_dir: Path) -> float:
    s = TrainSettings.from_cfg(cfg)
    pl.seed_everything(s.training.seed, workers=True, verbose=False)
    train_files, val_files = data.split(data.list_images(s.photos.root), s.photos.val_count, s.training.seed)
    loss = perceptual_loss(s)
    module = FastStyleModule(
        {"arch": s.network.arch, "width": s.network.width, "blocks": s.network.blocks},
        loss,
        s.training.lr,
        s.training.betas,
        s.training.weight_decay,
    )
    photos, training = s.photos, s.training
    crops = data.ContentCrops(
        train_files,
        photos.crop,
        training.steps * photos.batch_size,
        training.seed,
        photos.resize,
        photos.max_bad_fraction,
    )
    val = TensorDataset(data.validation_batch(val_files, photos.val_size))
    datamodule = StepData(crops, val, photos.batch_size, photos.num_workers)
    log.info(
        "train_fast: %d training photos, %d validation photos, %s network",
        len(train_files),
        len(val_files),
        s.network.arch,
    )
    metrics = fit(module, datamodule, s.training, s.hparams, output_dir, "train_fast")
    with atomic_write(output_dir / "val_files.txt", "w") as f:
        f.write("".join(f"{p}\n" for p in val_files))
    if module.last_val_images is not None:  # from fit's final validation
        for i, image in enumerate(module.last_val_images):
            images.save_image(image, output_dir / sweep.VAL_IMAGES / f"{i:02d}.png")
    return metrics["val/loss"]
