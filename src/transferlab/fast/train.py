"""The train_fast task: a feed-forward network for one style, trained on a folder of content photos
(Johnson et al., 2016). Writes TensorBoard logs, checkpoints/ and metrics.json into the run dir."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Subset, TensorDataset

from transferlab import fetch, images
from transferlab.fast import data
from transferlab.fast.module import FastStyleModule, make_loss
from transferlab.fast.settings import TrainSettings
from transferlab.files import atomic_write, write_json
from transferlab.trainer import make_trainer

log = logging.getLogger(__name__)


class _Crops(pl.LightningDataModule):
    """Training crops from the step the trainer is at (0, or the resumed step) to the last one."""

    def __init__(self, s: TrainSettings, train: list[Path], val: list[Path]) -> None:
        super().__init__()
        self.s = s
        self.crops = data.ContentCrops(train, s.crop, s.steps * s.batch_size, s.seed, s.resize, s.max_bad_fraction)
        self.val = TensorDataset(data.validation_batch(val, s.val_size))

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step * self.s.batch_size  # restored before the loaders are built
        subset = Subset(self.crops, range(start, len(self.crops)))
        return DataLoader(
            subset,
            batch_size=self.s.batch_size,
            shuffle=False,
            num_workers=self.s.num_workers,
            persistent_workers=self.s.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val, batch_size=self.s.batch_size, collate_fn=lambda items: torch.stack([i[0] for i in items])
        )


def run(cfg: DictConfig, output_dir: Path) -> float:
    s = TrainSettings.from_cfg(cfg)
    pl.seed_everything(s.seed, workers=True, verbose=False)
    train_files, val_files = data.split(data.list_images(s.root), s.val_count, s.seed)
    style = images.load_image(fetch.resolve(s.style, "task.style"), s.style_size)
    loss = make_loss(
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
    module = FastStyleModule(
        {"arch": s.network.arch, "width": s.network.width, "blocks": s.network.blocks},
        loss,
        s.lr,
        s.betas,
        s.weight_decay,
    )
    datamodule = _Crops(s, train_files, val_files)
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="step{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=s.checkpoint_every or s.steps,
        save_top_k=-1,
        save_last=False,
    )
    trainer = make_trainer(
        s.trainer,
        output_dir,
        max_steps=s.steps,
        max_epochs=-1,
        val_check_interval=s.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=s.log_every,
        callbacks=[checkpoint],
        enable_model_summary=False,
    )
    log.info(
        "train_fast: %d training photos, %d validation photos, %s network",
        len(train_files),
        len(val_files),
        s.network.arch,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(s.ckpt_path) if s.ckpt_path else None, weights_only=True)
    last = output_dir / "checkpoints" / "last.ckpt"
    tmp = last.with_name(".last.ckpt.tmp")
    trainer.save_checkpoint(tmp)
    tmp.replace(last)  # atomic: a reader never sees half a checkpoint
    final = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    metrics = {k: float(v) for k, v in final.items()}
    if trainer.logger is not None:
        trainer.logger.log_hyperparams(s.hparams, {f"hp/{k}": v for k, v in metrics.items()})
    write_json({"steps": trainer.global_step, "checkpoint": str(last), **metrics}, output_dir / "metrics.json")
    with atomic_write(output_dir / "val_files.txt", "w") as f:
        f.write("".join(f"{p}\n" for p in val_files))
    return metrics["val/loss"]
