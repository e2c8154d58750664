"""The train_fast task: a feed-forward network for one style, trained on a folder of content photos
(Johnson et al., 2016). Writes TensorBoard logs, checkpoints/, metrics.json, val_files.txt and
val_final/ (the validation photos stylized by the final network, in val_files.txt's order; a sweep's
contact sheet shows them a row per job) into the run dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from transferlab import fetch, images, memory, sweep
from transferlab.fast import data
from transferlab.fast.module import FastStyleModule, PerceptualLoss, make_loss
from transferlab.fast.networks import MIN_SIZE
from transferlab.fast.settings import Training, TrainSettings
from transferlab.files import atomic_write, write_json
from transferlab.trainer import log_summary, make_trainer

log = logging.getLogger(__name__)


class StepData(pl.LightningDataModule):
    """Training samples from the step the trainer is at (0, or the resumed step) to the last one, and a
    fixed validation set. ``train`` is indexable by sample (``data.ContentCrops``: sample i depends on
    the seed and i only), so that a resumed run sees the batches an uninterrupted run would."""

    def __init__(self, train: Dataset, val: Dataset, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.train, self.val, self.batch_size, self.num_workers = train, val, batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step * self.batch_size  # restored before the loaders are built
        return DataLoader(
            Subset(self.train, range(start, len(self.train))),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val, batch_size=self.batch_size, collate_fn=lambda items: torch.stack([i[0] for i in items])
        )


def fit(
    module: pl.LightningModule,
    datamodule: StepData,
    training: Training,
    hparams: dict[str, Any],
    output_dir: Path,
    task: str,
) -> dict[str, float]:
    """Train ``module`` for ``training.steps`` steps (validation every ``val_every``, checkpoints every
    ``checkpoint_every``, resumed from ``ckpt_path``) through the one Trainer factory; then write
    checkpoints/last.ckpt atomically, validate once more, log ``hparams`` with the final metrics and
    write metrics.json."""
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="step{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=training.checkpoint_every or training.steps,
        save_top_k=-1,
        save_last=False,
    )
    trainer = make_trainer(
        training.trainer,
        output_dir,
        max_steps=training.steps,
        max_epochs=-1,
        val_check_interval=training.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=training.log_every,
        callbacks=[checkpoint],
        enable_model_summary=False,
    )
    trainer.fit(
        module,
        datamodule=datamodule,
        ckpt_path=str(training.ckpt_path) if training.ckpt_path else None,
        weights_only=True,
    )
    last = output_dir / "checkpoints" / "last.ckpt"
    tmp = last.with_name(".last.ckpt.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)  # the full state: resume from it is exact
    tmp.replace(last)  # atomic: a reader never sees half a checkpoint
    final = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    metrics = {k: float(v) for k, v in final.items()}
    if trainer.logger is not None:
        log_summary(trainer.logger, hparams, metrics, trainer.global_step)
    write_json(
        {"task": task, "steps": trainer.global_step, "checkpoint": str(last), **metrics}, output_dir / "metrics.json"
    )
    return metrics


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
    memory.check_training(
        lambda x: module.perceptual(module.network(x), x)["loss"],
        module,
        photos.batch_size * photos.crop**2,
        training.trainer.accelerator,
        f"data.crop={photos.crop} with data.batch_size={photos.batch_size}",
        MIN_SIZE,
    )
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
