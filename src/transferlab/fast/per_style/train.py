"""The train_fast task: a feed-forward network for one style, trained on a folder of content photos
(Johnson et al., 2016). Writes TensorBoard logs, checkpoints/, val_files.txt and val_final/ (the
validation photos stylized by the final network, in val_files.txt's order: the images of its result, a
row per job in a sweep's contact sheet) into the run dir; the entry writes metrics.json from its result."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import TensorDataset

from transferlab import backbone, checkpoints, fetch, images, memory, runtime, text
from transferlab.fast import data
from transferlab.fast.per_style.module import FROZEN, FastStyleModule, make_loss
from transferlab.fast.per_style.networks import MIN_SIZE
from transferlab.fast.settings import TrainSettings
from transferlab.fast.train import StepData, fit, temporal_term
from transferlab.files import atomic_write
from transferlab.perceptual import PerceptualLoss
from transferlab.result import TaskResult

log = logging.getLogger(__name__)

VAL_IMAGES = "val_final"  # the validation photos stylized by the final network, 00.png, 01.png, ...


def perceptual_loss(s: TrainSettings) -> PerceptualLoss:
    """The run's loss: its VGG (random weights are drawn from torch's generator: ``run`` seeds it just
    before) with the Gram targets of its style image, if it has one."""
    style = None if s.style is None else images.load_image(fetch.resolve(s.style, "task.style"), s.style_size)
    m = s.model
    loss = make_loss(
        m.arch,
        m.weights,
        m.pooling,
        m.normalization,
        m.feature_scale,
        style,
        s.content_layers,
        s.style_layers,
        (s.loss.content, s.loss.style, s.loss.tv),
        s.runtime.winograd,
    )
    runtime.configure(s.runtime)  # after loading the weights: the heap would keep the checkpoint's memory
    return loss


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = TrainSettings.from_cfg(cfg)
    weights = backbone.announce_weights(s.model.weights, "VGG", "a stylization")
    text_weights = text.announce(s.text)
    pl.seed_everything(s.training.seed, workers=True, verbose=False)
    train_files, val_files = data.split(
        data.list_images(s.photos.root, hint=s.photos.hint), s.photos.val_count, s.training.seed
    )
    loss = perceptual_loss(s)
    prompt = None if s.text is None else text.text_loss(s.text)  # after VGG: random weights drawn in order
    module = FastStyleModule(
        {"arch": s.network.arch, "width": s.network.width, "blocks": s.network.blocks},
        loss,
        s.training.lr,
        s.training.betas,
        s.training.weight_decay,
        temporal_term(s.loss.temporal, s.steadiness, s.training.seed),
        prompt,
    )
    photos, training = s.photos, s.training
    memory.check_training(
        lambda x: module.terms(module.network(x), x)["loss"],
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
        photos.shard_window,
    )
    val = TensorDataset(data.validation_batch(val_files, photos.val_size))
    datamodule = StepData(crops, val, photos.batch_size, photos.num_workers)
    log.info(
        "train_fast: %d training photos, %d validation photos, %s network",
        len(train_files),
        len(val_files),
        s.network.arch,
    )
    depends = {"data.files": data.listing_digest([*train_files, *val_files], s.photos.root)}
    if s.style is not None:
        depends["task.style"] = fetch.sha256_of(fetch.resolve(s.style, "task.style"))
    fingerprint = checkpoints.fingerprint(s.fingerprint() | depends)
    result = fit(module, datamodule, training, s.hparams, output_dir, "train_fast", fingerprint, FROZEN)
    if rank_zero_only.rank != 0:  # under DDP the first process writes the run's files
        return result
    with atomic_write(output_dir / "val_files.txt", "w") as f:
        f.write("".join(f"{p}\n" for p in val_files))
    finals = [  # from fit's final validation
        images.save_image(image, output_dir / VAL_IMAGES / f"{i:02d}.png")
        for i, image in enumerate(module.last_val_images if module.last_val_images is not None else [])
    ]
    if s.text is None:
        return replace(result, images=tuple(finals), metrics=result.metrics | {"weights": weights})
    metrics = result.metrics | {"weights": weights, "text_weights": text_weights}
    return replace(result, images=tuple(finals), metrics=metrics, caption=(f'"{s.text.prompt}"', *result.caption))
