"""The train_adain task: a decoder for the frozen VGG19 encoder (AdaIN, Huang & Belongie, 2017), or a light
encoder and its decoder (distilled against VGG19), trained on a folder of content photos and a folder of
style images; TensorBoard with a fixed grid of validation photos x styles, checkpoints (exact resume) and
val_grid.png (the final validation's grid: the image of its result) in the run dir; the entry writes
metrics.json from its result."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import TensorDataset

from transferlab import backbone, checkpoints, images, memory, runtime
from transferlab.fast import data
from transferlab.fast.arbitrary.module import AdaINModule, Pairs
from transferlab.fast.arbitrary.networks import MIN_SIZE
from transferlab.fast.arbitrary.settings import TrainAdaINSettings
from transferlab.fast.train import StepData, fit, temporal_term
from transferlab.files import atomic_write
from transferlab.result import TaskResult

log = logging.getLogger(__name__)

VAL_GRID = "val_grid.png"  # the final validation's grid: a header row of photos, then each style and its stylizations


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = TrainAdaINSettings.from_cfg(cfg)
    weights = backbone.announce_weights(s.weights, "VGG", "a stylization")
    pl.seed_everything(s.training.seed, workers=True, verbose=False)
    train_files, val_files = data.split(
        data.list_images(s.photos.root, hint=s.photos.hint), s.photos.val_count, s.training.seed
    )
    style_files = data.list_images(s.styles, "task.styles", s.styles_hint)
    n = s.training.steps * s.photos.batch_size
    p = s.photos
    pairs = Pairs(
        data.ContentCrops(train_files, p.crop, n, s.training.seed, p.resize, p.max_bad_fraction, p.shard_window),
        data.ContentCrops(
            style_files, p.crop, n, s.training.seed + 1, s.style_resize, p.max_bad_fraction, p.shard_window
        ),
    )
    previews = data.validation_batch(style_files[: s.preview_styles], s.photos.val_size)
    module = AdaINModule(
        {"arch": s.arch, "weights": s.weights, "normalization": s.normalization, "pooling": s.pooling}
        | {"style_layers": s.style_layers, "encoder": s.encoder, "width": s.width}
        | ({"content_layers": s.content_layers} if s.arch != "adain" else {}),  # AdaIN's is fixed: relu4_1
        (s.content_weight, s.style_weight, s.distill_weight, s.identity_weight, s.identity_features_weight),
        s.training.lr,
        s.training.betas,
        s.training.weight_decay,
        previews,
        s.preview_size,
        s.runtime.winograd,
        temporal_term(s.temporal_weight, s.steadiness, s.training.seed),
    )
    runtime.configure(s.runtime)  # after loading the weights: the heap would keep the checkpoint's memory
    # The probe stands for both the content and the style crops.
    memory.check_training(
        lambda x: module.terms(x, x)[1]["loss"],
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
    depends = {
        "data.files": data.listing_digest([*train_files, *val_files], s.photos.root),
        "task.styles": data.listing_digest(style_files, s.styles, "task.styles"),
    }
    fingerprint = checkpoints.fingerprint(s.fingerprint() | depends)
    result = fit(module, datamodule, s.training, s.hparams, output_dir, "train_adain", fingerprint)
    if rank_zero_only.rank != 0:  # under DDP the first process writes the run's files
        return result
    with atomic_write(output_dir / "val_files.txt", "w") as f:
        f.write("".join(f"{p}\n" for p in val_files))
    grid = () if module.last_grid is None else (images.save_image(module.last_grid, output_dir / VAL_GRID),)
    return replace(result, images=grid, metrics=result.metrics | {"weights": weights})
