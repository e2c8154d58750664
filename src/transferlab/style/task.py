"""The stylize task (Gatys et al. neural style transfer): coarse-to-fine schedule, optional tiles,
quality metrics, resumable runs. The config is checked at the door (style/settings.py); the
optimization itself is style/module.py."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from torch import Tensor

from transferlab import backbone, color, features, images, runtime, text, trainer
from transferlab.features import Encoder
from transferlab.perceptual import PerceptualLoss
from transferlab.result import TaskResult
from transferlab.style import estimate, quality, scene, tiling
from transferlab.style.module import FINAL_TAG, QUALITY_TAGS, ImageLogger, ProgressBar, StyleTransfer
from transferlab.style.settings import StyleSettings, hparams

log = logging.getLogger(__name__)


def build(settings: StyleSettings) -> tuple[StyleTransfer, Encoder]:
    """The StyleTransfer module (inputs loaded, the loss network built) over the whole-image scales, and an
    encoder for the quality metrics sharing its weights (``reference_encoder``)."""
    encoder, reference = encoders(settings)
    perceptual = PerceptualLoss.of(encoder, settings.content_layers, settings.style_layers, settings.loss)
    prompt = None if settings.text is None else text.text_loss(settings.text)
    if prompt is not None:
        perceptual = perceptual.like({"loss/text": prompt})
    module = StyleTransfer(
        perceptual,
        scene.load(settings.inputs, settings.size),
        settings.optimizer,
        settings.whole_schedule,
        convergence=settings.convergence,
        text=prompt,
    )
    return module, reference


def encoders(settings: StyleSettings) -> tuple[Encoder, Encoder]:
    """The loss network on the run's layers, and one on the quality metrics' layers over the same weights:
    VGG's ``quality.REFERENCE_LAYERS``; another family's ``features.stage_ends``, the same for every run of
    that network, so that its figures compare across runs."""
    model = settings.model
    layers = [*settings.content_layers, *settings.style_layers]
    node = features.is_node_arch(model.arch)
    reference = features.stage_ends(model.arch) if node else quality.REFERENCE_LAYERS
    encoder, ruler = features.encoders(model, [layers, reference], settings.runtime.winograd)
    return encoder, ruler


def fit_tiles(settings: StyleSettings, module: StyleTransfer, start: Tensor, make: Callable[..., pl.Trainer]) -> Tensor:
    """Optimize the output size tile by tile, in bounded memory: each tile starts from ``start``
    (the upsampled result of the coarser scales, or the initial image) and matches the Gram
    targets of the whole styles, so that all tiles share them; the seams are cross-faded."""
    height, width = start.shape[-2:]
    boxes = tiling.tile_boxes(height, width, settings.tile, settings.tile_overlap)
    blender = tiling.Blender(height, width, settings.tile_overlap)
    for i, box in enumerate(boxes):
        log.info("tile %d/%d at (top, left, height, width) = %s", i + 1, len(boxes), box)
        tile = module.tile(box, start, settings.steps)
        make(max_steps=settings.steps, logger=False, enable_progress_bar=False, enable_checkpointing=False).fit(tile)
        blender.add(tile.rendered().detach()[0], box)
        module.count_tile(tile)
    result = blender.result().clamp(0, 1)
    return result if module.scene.original is None else color.recombine(result, module.scene.original)


def log_estimate(settings: StyleSettings, module: StyleTransfer) -> None:
    """Peak memory and time per evaluation expected at the largest whole-image scale, and the time of the
    whole run over every scale and tile, with the conv throughput of this device measured now (two
    convolutions of 9.7 GFLOP: 1 s in all on 2 cores at a load average of 9, less on an idle machine)."""
    throughput = estimate.conv_throughput(settings.trainer.device, repeats=1)
    height, width = module.scene.content.shape[-2:]
    scales = []
    style = module.scene.styles[0] if module.scene.styles else module.scene.content  # a prompt alone: no style image
    for i, (factor, steps) in enumerate(settings.schedule):
        style_hw = tuple(max(1, round(n * factor)) for n in style.shape[-2:])
        hw, count = (max(1, round(height * factor)), max(1, round(width * factor))), 1
        if settings.tiled and i == len(settings.schedule) - 1:
            boxes = tiling.tile_boxes(height, width, settings.tile, settings.tile_overlap)
            hw, count = boxes[0][2:], len(boxes)
        scales.append((settings.memory.estimate(hw, style_hw, throughput), steps * count))
    whole = len(module.schedule) - 1  # the largest whole-image scale
    log.info("%s; %s", scales[whole][0].describe(), estimate.describe_total(scales))


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    """The stylize task: writes final.png and TensorBoard events into ``output_dir``; the entry writes its result."""
    return stylize(StyleSettings.from_cfg(cfg), output_dir)


# TensorBoard's Custom Scalars tab: the loss terms on one chart, the per-layer style losses on another.
LAYOUT = {
    "losses": {
        "loss terms (total, content, style; tv, temporal when weighted)": ["Multiline", [r"^loss/(?!.*_log10$)"]],
        "style loss per layer": ["Multiline", [r"^style/"]],
    }
}
FINAL_IMAGE = "final.png"


def summary_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The HParams session's metrics: the final losses under the tags of their curves and two quality figures."""
    values = {f"loss/{k[5:]}": v for k, v in metrics.items() if k.startswith("loss_")}
    return values | {tag: metrics[f"quality_{key}"] for key, tag in QUALITY_TAGS.items()}


def stylize(settings: StyleSettings, output_dir: Path) -> TaskResult:
    """The recipe: build the module, optimize (``optimize``), measure the result (``final_metrics``)."""
    pl.seed_everything(settings.seed, verbose=False)
    arch = settings.model.arch
    weights = backbone.announce_weights(
        settings.model.weights, arch if features.is_node_arch(arch) else "VGG", "a stylization"
    )
    text_weights = text.announce(settings.text)
    module, reference = build(settings)
    log_estimate(settings, module)
    # After loading the weights: the heap would keep the checkpoint's memory (VGG's classifier too).
    runtime.configure(settings.runtime)
    final = output_dir / FINAL_IMAGE
    image, fit = optimize(settings, module, reference, output_dir, final)
    metrics = final_metrics(module, reference, image, fit.global_step)
    metrics["weights"] = weights
    if text_weights is not None:
        metrics["text_weights"] = text_weights
    fit.logger.experiment.add_image(FINAL_TAG, images.fits_in(image.cpu(), settings.image_log_size), fit.global_step)
    fit.logger.finalize("success")
    log.info(
        "final image: %s (loss %.4g after %d of %d steps, %d evaluations%s; SSIM to content %.3f, style distance %.4g)",
        final,
        metrics["loss_total"],
        metrics["steps"],
        module.ends[-1],
        module.evaluations,
        "".join(f"; {c.describe()}" for c in module.converged),
        metrics["quality_ssim"],
        metrics["quality_gram_mean"],
    )
    return TaskResult(
        metrics=metrics,
        objective=metrics["loss_total"],
        images=(final,),
        caption=caption(settings, metrics),
        hparams=hparams(settings),
        summary=summary_metrics(metrics),
        # At the step of the last logged losses, so that the final point sits on their curves.
        step=max(fit.global_step - 1, 0),
    )


def caption(settings: StyleSettings, metrics: dict[str, float]) -> tuple[str, ...]:
    """A sweep's contact-sheet caption: the loss and quality figures; with a prompt, the prompt first."""
    figures = f"loss {metrics['loss_total']:.4g}", f"ssim {metrics['quality_ssim']:.3f}"
    if settings.text is not None:
        prompt = settings.text.prompt
        return f'"{prompt if len(prompt) <= 60 else prompt[:57] + "..."}"', *figures
    return figures[0], f"{figures[1]}  style {metrics['quality_gram_mean']:.3g}"


def callbacks(settings: StyleSettings, reference: Encoder, output_dir: Path) -> list[pl.Callback]:
    """The progress bar, the preview images, the resume record and, with ``task.checkpoint_every``, the
    checkpoints."""
    out: list[pl.Callback] = [
        ProgressBar(),
        ImageLogger(settings.image_every, settings.image_log_size, reference),
        # What the run depends on: a resume with other inputs or settings is refused (style.settings).
        trainer.ResumeRecord("stylize", settings.fingerprint),
    ]
    if settings.checkpoint_every:
        checkpoints = output_dir / "checkpoints"
        out += [
            # No "=" in the name: Hydra's override grammar would trip on ckpt_path=.../step=4.ckpt.
            ModelCheckpoint(
                checkpoints,
                filename="step{step:06d}",
                auto_insert_metric_name=False,
                every_n_train_steps=settings.checkpoint_every,
                save_top_k=1,
            ),
            OnExceptionCheckpoint(checkpoints, filename="interrupted"),
        ]
    return out


def optimize(
    settings: StyleSettings, module: StyleTransfer, reference: Encoder, output_dir: Path, final: Path
) -> tuple[Tensor, pl.Trainer]:
    """Optimize the whole image over its scales, then tile by tile where tiled; returns the result and
    the whole-image Trainer. ``final`` is written also on Ctrl-C or a non-finite loss (the latest image)."""

    def make(**kwargs: Any) -> pl.Trainer:
        return trainer.make_trainer(
            settings.trainer, output_dir, log_every_n_steps=1, enable_model_summary=False, **kwargs
        )

    fit = make(
        max_steps=module.ends[-1],
        enable_checkpointing=bool(settings.checkpoint_every),
        callbacks=callbacks(settings, reference, output_dir),
    )
    fit.logger.experiment.add_custom_scalars(LAYOUT)
    result = None
    tiled = settings.tiled
    try:
        if not tiled or len(settings.schedule) > 1:
            ckpt = None if settings.ckpt_path is None else str(settings.ckpt_path)
            fit.fit(module, ckpt_path=ckpt, weights_only=True)
        if tiled:
            full = tuple(module.scene.content.shape[-2:])
            start = module.upsampled(full)[0] if len(settings.schedule) > 1 else module.scene.init
            result = fit_tiles(settings, module, start.to(module.device), make)
        else:
            result = module.output()
    finally:
        # Also on Ctrl-C and on a loss that became non-finite: the latest (finite) image is kept.
        if result is not None or fit.global_step > 0:
            images.save_image(result if result is not None else module.output(), final)
    return result, fit


def final_metrics(module: StyleTransfer, reference: Encoder, result: Tensor, steps: int) -> dict[str, float]:
    """The last losses, and quality metrics on a fixed scale: SSIM of the output's luminance to
    the content's, and the Gram distance to the (blend of) styles on the reference encoder's layers."""
    metrics = {k.replace("/", "_"): float(v) for k, v in module.last_losses.items()}
    # The reference shares the encoder's convs, not its normalization buffers.
    figures = quality.figures(reference.to(module.device), result, module.scene)
    metrics |= {f"quality_{k}": v for k, v in figures.items()}
    metrics["evaluations"] = module.evaluations
    metrics["steps"] = steps
    # Where each scale (or tile) that converged did so; empty: every scale ran all its steps unconverged.
    metrics["converged"] = [dataclasses.asdict(c) for c in module.converged]
    return metrics
