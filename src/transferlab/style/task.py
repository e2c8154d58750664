"""The stylize task (Gatys et al. neural style transfer): checks, coarse-to-fine schedule,
optional tiles, quality metrics, resumable runs; the optimization itself is style_transfer.py."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from torch import Tensor

from transferlab import backbone, color, fetch, images, runtime, trainer, winograd
from transferlab import checks as config
from transferlab.errors import ConfigError
from transferlab.files import write_json
from transferlab.style import estimate, quality, scene, tiling
from transferlab.style.module import ImageLogger, LossWeights, StyleTransfer

log = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs", "adam")


def schedule(task: DictConfig) -> list[tuple[float, int]]:
    """``[(scale factor, steps), ...]`` from ``task.scales`` / ``task.scale_steps``, ending at the output size."""
    scales, steps = list(task.scales or []), list(task.scale_steps or [])
    if len(scales) != len(steps):
        raise ConfigError(
            f"task.scales has {len(scales)} sizes but task.scale_steps {len(steps)}; give one step count per scale"
        )
    for i, (size, n) in enumerate(zip(scales, steps)):
        config.at_least(size, 32, f"task.scales[{i}]")
        config.at_least(n, 1, f"task.scale_steps[{i}]")
    if scales != sorted(scales) or (scales and scales[-1] >= task.size):
        raise ConfigError(f"task.scales={scales} must increase and stay below task.size={task.size} (the last scale)")
    return [(size / task.size, n) for size, n in zip(scales, steps)] + [(1.0, task.steps)]


def check(cfg: DictConfig) -> None:
    """Fail before any work on a config value that cannot work."""
    task = cfg.task
    config.at_least(task.size, 32, "task.size")
    if not 0 < task.memory_budget <= 1:
        raise ConfigError(
            f"task.memory_budget={task.memory_budget} is invalid; it must be a share of free memory in (0, 1]"
        )
    config.at_least(task.steps, 1, "task.steps")
    config.at_least(task.image_every, 0, "task.image_every")
    config.at_least(task.checkpoint_every, 0, "task.checkpoint_every")
    config.at_least(task.tile, 0, "task.tile")
    if task.tile:
        config.at_least(task.tile, 64, "task.tile")
        config.at_least(task.tile_overlap, 0, "task.tile_overlap")
        if task.tile_overlap >= task.tile // 2:
            raise ConfigError(f"task.tile_overlap={task.tile_overlap} must be below half of task.tile={task.tile}")
    schedule(task)
    if cfg.ckpt_path and is_tiled(task) and not task.scales:
        raise ConfigError(
            "ckpt_path resumes the whole-image scales, and this tiled run has none; set task.scales or drop ckpt_path"
        )
    scene.check(task)
    config.choice(cfg.optimizer.name, OPTIMIZERS, "optimizer.name")
    for key in ("content_weight", "style_weight", "tv_weight"):
        config.non_negative(cfg.loss[key], f"loss.{key}")
    backbone.check_arch(cfg.model.arch)
    for kind in ("content", "style"):
        weights = config.layer_weights(cfg.layers[kind], f"layers.{kind}")
        backbone.check_layers(cfg.model.arch, weights, f"layers.{kind}")
    if str(cfg.precision) == "16-mixed" and cfg.optimizer.name == "lbfgs":
        raise ConfigError(
            "precision=16-mixed cannot drive optimizer=lbfgs (fp16 loss scaling breaks its line search); "
            "use precision=bf16-mixed or 32, or optimizer=adam"
        )
    config.trainer_settings(cfg)


def build(cfg: DictConfig, plan: list[tuple[float, int]]) -> tuple[StyleTransfer, backbone.VGGFeatures]:
    """The StyleTransfer module for ``cfg`` and ``plan`` (inputs loaded, VGG built), and an encoder
    on ``quality.REFERENCE_LAYERS`` sharing its weights, for the quality metrics."""
    content_layers = config.layer_weights(cfg.layers.content, "layers.content")
    style_layers = config.layer_weights(cfg.layers.style, "layers.style")
    model = cfg.model
    features, normalization = backbone.build_features(model.arch, model.weights, model.pooling, model.normalization)
    encoder = backbone.VGGFeatures(
        features, model.arch, [*content_layers, *style_layers], normalization, model.feature_scale
    )
    reference = backbone.VGGFeatures(features, model.arch, quality.REFERENCE_LAYERS, normalization, model.feature_scale)
    module = StyleTransfer(
        encoder,
        scene.load(cfg.task),
        content_layers,
        style_layers,
        LossWeights(cfg.loss.content_weight, cfg.loss.style_weight, cfg.loss.tv_weight),
        dict(cfg.optimizer),
        plan,
    )
    return module, reference


def is_tiled(task: DictConfig) -> bool:
    return bool(task.tile) and task.size > task.tile


def fit_tiles(task: DictConfig, module: StyleTransfer, start: Tensor, make: Callable[..., pl.Trainer]) -> Tensor:
    """Optimize the output size tile by tile, in bounded memory: each tile starts from ``start``
    (the upsampled result of the coarser scales, or the initial image) and matches the Gram
    targets of the whole styles, so that all tiles share them; the seams are cross-faded."""
    height, width = start.shape[-2:]
    boxes = tiling.tile_boxes(height, width, task.tile, task.tile_overlap)
    blender = tiling.Blender(height, width, task.tile_overlap)
    for i, box in enumerate(boxes):
        log.info("tile %d/%d at (top, left, height, width) = %s", i + 1, len(boxes), box)
        tile = StyleTransfer(
            module.encoder,
            module.scene.crop(box, start),
            module.content_layers,
            module.style_layers,
            module.weights,
            module.optimizer_cfg,
            [(1.0, task.steps)],
        )
        make(max_steps=task.steps, logger=False, enable_progress_bar=False, enable_checkpointing=False).fit(tile)
        blender.add(tile.rendered().detach()[0], box)
        module.evaluations += tile.evaluations
        module.last_losses = tile.last_losses
    result = blender.result().clamp(0, 1)
    return result if module.scene.original is None else color.recombine(result, module.scene.original)


def resolve_auto_size(cfg: DictConfig) -> None:
    """``task.size=auto``: the largest output whose estimated peak memory fits ``task.memory_budget``
    of the device's free memory."""
    if cfg.task.size != "auto":
        return
    device = config.trainer_settings(cfg).accelerator
    width, height = images.open_rgb(fetch.resolve(str(cfg.task.content), "task.content")).size
    budget = int(cfg.task.memory_budget * estimate.available_memory(device))
    cfg.task.size = estimate.auto_size(
        cfg, width / height, budget, runtime.keeps_freed_blocks(device), winograd.runs_on(device)
    )
    log.info("task.size=auto: %d px, the largest that fits %.2f GiB on %s", cfg.task.size, budget / 2**30, device)


def log_estimate(cfg: DictConfig, module: StyleTransfer) -> None:
    """Peak memory and time per evaluation expected at the largest whole-image scale, with the conv
    throughput of this device measured now (about a second)."""
    last = len(module.schedule) - 1
    factor = module.schedule[last][0]
    style_hw = tuple(max(1, round(n * factor)) for n in module.scene.styles[0].shape[-2:])
    device = config.trainer_settings(cfg).accelerator
    throughput = estimate.conv_throughput(device, repeats=1)
    log.info(
        estimate.for_config(
            cfg, module.hw(last), style_hw, throughput, runtime.keeps_freed_blocks(device), winograd.runs_on(device)
        ).describe()
    )


def run(cfg: DictConfig, output_dir: Path) -> float:
    """The stylize task: writes final.png, metrics.json and TensorBoard events into ``output_dir``."""
    resolve_auto_size(cfg)
    check(cfg)
    pl.seed_everything(cfg.seed, verbose=False)
    # The frozen VGG is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")
    plan = schedule(cfg.task)
    tiled = is_tiled(cfg.task)
    # A tiled run optimizes its coarser scales whole, then the output size in tiles.
    module, reference = build(cfg, plan[:-1] if tiled and len(plan) > 1 else plan)
    log_estimate(cfg, module)
    # After loading the weights: the heap would keep the checkpoint's memory (VGG's classifier too).
    runtime.configure()

    def make(**kwargs: Any) -> pl.Trainer:
        return trainer.make_trainer(
            config.trainer_settings(cfg), output_dir, log_every_n_steps=1, enable_model_summary=False, **kwargs
        )

    callbacks: list[pl.Callback] = [ImageLogger(cfg.task.image_every, cfg.task.image_log_size)]
    if cfg.task.checkpoint_every:
        checkpoints = output_dir / "checkpoints"
        callbacks += [
            # No "=" in the name: Hydra's override grammar would trip on ckpt_path=.../step=4.ckpt.
            ModelCheckpoint(
                checkpoints,
                filename="step{step:06d}",
                auto_insert_metric_name=False,
                every_n_train_steps=cfg.task.checkpoint_every,
                save_top_k=1,
            ),
            OnExceptionCheckpoint(checkpoints, filename="interrupted"),
        ]
    fit = make(max_steps=module.ends[-1], enable_checkpointing=bool(cfg.task.checkpoint_every), callbacks=callbacks)
    final = output_dir / "final.png"
    result = None
    try:
        if not tiled or len(plan) > 1:
            fit.fit(module, ckpt_path=cfg.ckpt_path)
        if tiled:
            full = tuple(module.scene.content.shape[-2:])
            start = module.upsampled(full)[0] if len(plan) > 1 else module.scene.init
            result = fit_tiles(cfg.task, module, start.to(module.device), make)
        else:
            result = module.output()
    finally:
        # Also on Ctrl-C (Lightning then exits): the latest image is kept.
        if result is not None or fit.global_step > 0:
            images.save_image(result if result is not None else module.output(), final)
    metrics = final_metrics(module, reference, result, fit.global_step)
    write_json(metrics, output_dir / "metrics.json")
    logger = fit.logger
    logger.experiment.add_image("final", images.fits_in(result.cpu(), cfg.task.image_log_size))
    logger.log_hyperparams(
        config.flat(cfg, ["task", "model", "layers", "loss", "optimizer"])
        | {"precision": str(cfg.precision), "seed": cfg.seed},
        {f"final/{k}": v for k, v in metrics.items() if k.startswith(("loss_", "quality_"))},
    )
    logger.finalize("success")
    log.info(
        "final image: %s (loss %.4g after %d steps, %d evaluations; SSIM to content %.3f, style distance %.4g)",
        final,
        metrics["loss_total"],
        metrics["steps"],
        module.evaluations,
        metrics["quality_ssim"],
        metrics["quality_gram_mean"],
    )
    return metrics["loss_total"]


def final_metrics(
    module: StyleTransfer, reference: backbone.VGGFeatures, result: Tensor, steps: int
) -> dict[str, float]:
    """The last losses, and quality metrics on a fixed scale: SSIM of the output's luminance to
    the content's, and the Gram distance to the (blend of) styles on ``quality.REFERENCE_LAYERS``."""
    s = module.scene
    content = s.original if s.original is not None else s.content
    metrics = {k.replace("/", "_"): float(v) for k, v in module.last_losses.items()}
    metrics["quality_ssim"] = float(quality.ssim(result, images.resize(content, tuple(result.shape[-2:]))))
    seen = color.luminance_image(result) if s.original is not None else result
    reference = reference.to(module.device)  # shares the encoder's convs, not its normalization buffers
    distances = [quality.gram_distances(reference, seen, style) for style in s.styles]
    for layer in quality.REFERENCE_LAYERS:
        metrics[f"quality_gram_{layer}"] = sum(w * d[layer] for w, d in zip(s.style_weights, distances))
    metrics["quality_gram_mean"] = sum(metrics[f"quality_gram_{l}"] for l in quality.REFERENCE_LAYERS) / len(
        quality.REFERENCE_LAYERS
    )
    metrics["evaluations"] = module.evaluations
    metrics["steps"] = steps
    return metrics
