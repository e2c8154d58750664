"""Gatys et al. neural style transfer as a LightningModule whose only parameter is the image,
and the stylize task: coarse-to-fine scales, optional tiles, quality metrics, resumable runs."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader

from transferlab import backbone, color, config, estimate, fetch, images, quality, scene, tiling, trainer
from transferlab.errors import ConfigError
from transferlab.files import write_json
from transferlab.losses import content_loss, gram_matrix, style_loss, total_variation

log = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs", "adam")
LINE_SEARCH_EVALS = 25  # torch's own bound on a strong-Wolfe line search


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float


class StyleTransfer(pl.LightningModule):
    """Optimizes ``image`` so that its features match the content's and its Gram matrices match
    the styles'. ``schedule`` is ``[(scale, steps), ...]``: the image is optimized at each scale
    of the scene in turn (coarse to fine), upsampled in between; targets are computed once per scale."""

    def __init__(
        self,
        encoder: backbone.VGGFeatures,
        scene: scene.Scene,
        content_layers: dict[str, float],
        style_layers: dict[str, float],
        weights: LossWeights,
        optimizer: dict[str, Any],
        schedule: list[tuple[float, int]],
    ) -> None:
        super().__init__()
        # L-BFGS evaluates the loss several times per step; manual optimization lets us
        # count those evaluations and log each step exactly once.
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints leave out the frozen VGG
        self.encoder = encoder
        self.scene = scene
        self.content_layers = content_layers
        self.style_layers = style_layers
        self.weights = weights
        self.optimizer_cfg = optimizer
        self.schedule = schedule
        self.ends = list(accumulate(steps for _, steps in schedule))
        self.scale = 0
        # L-BFGS flattens the gradient with view(-1): the image must be contiguous.
        self.image = nn.Parameter(images.resize(scene.init, self.hw(0)).unsqueeze(0).clone(memory_format=torch.contiguous_format))
        self.evaluations = 0
        self.last_losses: dict[str, Tensor] = {}
        self.last_point: Tensor | None = None
        self.last_grad: Tensor | None = None

    def hw(self, scale: int) -> tuple[int, int]:
        h, w = self.scene.content.shape[-2:]
        factor = self.schedule[scale][0]
        return max(1, round(h * factor)), max(1, round(w * factor))

    def scale_at(self, step: int) -> int:
        return next((i for i, end in enumerate(self.ends) if step < end), len(self.ends) - 1)

    def prepare_scale(self) -> None:
        """Content features, Gram targets and masks at the current scale, computed once."""
        hw, factor = self.hw(self.scale), self.schedule[self.scale][0]
        s = self.scene
        self.content = images.resize(s.content, hw).unsqueeze(0)
        self.strength = None if s.strength is None else images.resize(s.strength, hw).unsqueeze(0)
        with torch.no_grad():
            content = self.encoder(self.content)
            styles = [self.encoder(images.resize_long_side(x, max(1, round(max(x.shape[-2:]) * factor))).unsqueeze(0))
                      for x in s.styles]
        self.content_targets = {layer: content[layer] for layer in self.content_layers}
        self.gram_targets = [{layer: gram_matrix(f[layer]) for layer in self.style_layers} for f in styles]
        masks = s.masks or [None] * len(s.styles)
        if s.strength is not None:
            # Style statistics are taken where the style applies, in proportion to its strength.
            masks = [s.strength if m is None else m * s.strength for m in masks]
        self.layer_masks = [
            {layer: None if m is None else images.resize(m, tuple(content[layer].shape[-2:])).unsqueeze(0)
             for layer in self.style_layers}
            for m in masks
        ]

    def rendered(self) -> Tensor:
        """The image VGG sees: where a strength map is given, ``content + strength * (image - content)``,
        so zero-strength regions are exactly the content."""
        return self.image if self.strength is None else self.content + self.strength * (self.image - self.content)

    def output(self) -> Tensor:
        """The current result as a displayable ``[3, H, W]`` image in [0, 1] (colour restored in luminance mode)."""
        image = self.rendered().detach()[0].float().clamp(0, 1)
        return image if self.scene.original is None else color.recombine(image, self.scene.original)

    def on_fit_start(self) -> None:
        self.scene = self.scene.to(self.device)
        self.prepare_scale()

    def losses(self) -> dict[str, Tensor]:
        """Every loss term of the current image, weighted, keyed by its metric name."""
        image = self.rendered()
        features = self.encoder(image)
        content = sum(w * content_loss(features[l], self.content_targets[l]) for l, w in self.content_layers.items())
        per_layer = {
            l: w * sum(sw * style_loss(features[l], targets[l], masks[l])
                       for sw, targets, masks in zip(self.scene.style_weights, self.gram_targets, self.layer_masks))
            for l, w in self.style_layers.items()
        }
        terms = {
            "loss/content": self.weights.content * content,
            "loss/style": self.weights.style * sum(per_layer.values()),
            "loss/tv": self.weights.tv * total_variation(image),
        }
        terms["loss/total"] = sum(terms.values())
        terms.update({f"style/loss_{l}": self.weights.style * v for l, v in per_layer.items()})
        return terms

    def next_scale(self) -> None:
        """Upsample the image to the next scale and start a fresh optimizer (its curvature history
        and moments belong to the old resolution)."""
        self.scale += 1
        upsampled = images.resize(self.image.detach(), self.hw(self.scale))
        self.image = nn.Parameter(upsampled.contiguous())
        self.prepare_scale()
        self.trainer.strategy.optimizers = [self.configure_optimizers()]
        self.last_point = self.last_grad = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Here, not in training_step: Lightning hooks its step counting into the optimizers
        # between the two, so a new optimizer must exist before then.
        if self.scale_at(self.global_step) > self.scale:
            self.next_scale()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        optimizer = self.optimizers()

        def closure() -> Tensor:
            # L-BFGS re-evaluates, at the start of each step, the point its line search just
            # accepted; answering from the last evaluation saves one VGG pass per step.
            if self.last_point is not None and torch.equal(self.last_point, self.image):
                self.image.grad = self.last_grad.clone()
                return self.last_losses["loss/total"]
            optimizer.zero_grad()
            terms = self.losses()
            self.manual_backward(terms["loss/total"])
            self.evaluations += 1
            self.last_losses = {k: v.detach() for k, v in terms.items()}
            self.last_point, self.last_grad = self.image.detach().clone(), self.image.grad.detach().clone()
            return terms["loss/total"]

        optimizer.step(closure=closure)
        if not isinstance(optimizer.optimizer, torch.optim.LBFGS):
            # L-BFGS is left unclamped: clamping moves the iterate away from its curvature pairs
            # (the loss then explodes); its images are clamped when they are saved or logged.
            with torch.no_grad():
                self.image.clamp_(0, 1)
        self.log_dict(self.last_losses, prog_bar=False)
        self.log("loss", self.last_losses["loss/total"], prog_bar=True, logger=False)
        self.log("train/evaluations", float(self.evaluations), prog_bar=True)
        self.log("train/scale", float(self.scale))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.optimizer_cfg
        if cfg["name"] == "lbfgs":
            # One iteration per step, so that the step budget counts iterations. max_eval must be
            # explicit: torch's default (max_iter * 5 // 4 = 1) leaves the line search no evaluation.
            return torch.optim.LBFGS(
                [self.image],
                lr=cfg["lr"],
                max_iter=1,
                max_eval=LINE_SEARCH_EVALS,
                history_size=cfg["history_size"],
                line_search_fn=cfg["line_search"],
            )
        return torch.optim.Adam([self.image], lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])

    def train_dataloader(self) -> DataLoader:
        # Nothing to load: each "batch" is one optimizer step on the image.
        return DataLoader(range(self.ends[-1]), batch_size=None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("encoder.")]:
            del state[key]  # rebuilt from the config; saves 80 MB per checkpoint
        checkpoint["evaluations"] = self.evaluations

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The image was saved after step `global_step`, i.e. at the scale of the step before it.
        self.scale = self.scale_at(max(checkpoint["global_step"] - 1, 0))
        saved = tuple(checkpoint["state_dict"]["image"].shape)
        expected = (1, 3, *self.hw(self.scale))
        if saved != expected:
            raise ConfigError(
                f"ckpt_path: the checkpoint's image is {saved[-2]}x{saved[-1]} but this run expects "
                f"{expected[-2]}x{expected[-1]} at step {checkpoint['global_step']}; resume with the config it was made with"
            )
        self.image = nn.Parameter(torch.empty(expected))
        self.evaluations = checkpoint.get("evaluations", 0)


class ImageLogger(pl.Callback):
    """Logs a downscaled preview of the image to TensorBoard every ``every`` steps."""

    def __init__(self, every: int, size: int) -> None:
        self.every, self.size = every, size

    def on_train_batch_end(self, trainer: pl.Trainer, module: StyleTransfer, *args: Any) -> None:
        if self.every and trainer.global_step % self.every == 0 and isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.experiment.add_image("image", images.fits_in(module.output().cpu(), self.size), trainer.global_step)


def schedule(task: DictConfig) -> list[tuple[float, int]]:
    """``[(scale factor, steps), ...]`` from ``task.scales`` / ``task.scale_steps``, ending at the output size."""
    scales, steps = list(task.scales or []), list(task.scale_steps or [])
    if len(scales) != len(steps):
        raise ConfigError(f"task.scales has {len(scales)} sizes but task.scale_steps {len(steps)}; give one step count per scale")
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
        raise ConfigError(f"task.memory_budget={task.memory_budget} is invalid; it must be a share of free memory in (0, 1]")
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
        raise ConfigError("ckpt_path resumes the whole-image scales, and this tiled run has none; set task.scales or drop ckpt_path")
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
    trainer.precision(cfg, trainer.accelerator(cfg.trainer.accelerator))


def build(cfg: DictConfig, plan: list[tuple[float, int]]) -> tuple[StyleTransfer, backbone.VGGFeatures]:
    """The StyleTransfer module for ``cfg`` and ``plan`` (inputs loaded, VGG built), and an encoder
    on ``quality.REFERENCE_LAYERS`` sharing its weights, for the quality metrics."""
    content_layers = config.layer_weights(cfg.layers.content, "layers.content")
    style_layers = config.layer_weights(cfg.layers.style, "layers.style")
    model = cfg.model
    features, normalization = backbone.build_features(model.arch, model.weights, model.pooling, model.normalization)
    encoder = backbone.VGGFeatures(features, model.arch, [*content_layers, *style_layers], normalization, model.feature_scale)
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
        tile = StyleTransfer(module.encoder, module.scene.crop(box, start), module.content_layers, module.style_layers,
                             module.weights, module.optimizer_cfg, [(1.0, task.steps)])
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
    device = trainer.accelerator(cfg.trainer.accelerator)
    width, height = images.open_rgb(fetch.resolve(str(cfg.task.content), "task.content")).size
    budget = int(cfg.task.memory_budget * estimate.available_memory(device))
    cfg.task.size = estimate.auto_size(cfg, width / height, budget)
    log.info("task.size=auto: %d px, the largest that fits %.2f GiB on %s", cfg.task.size, budget / 2**30, device)


def log_estimate(cfg: DictConfig, module: StyleTransfer) -> None:
    """Peak memory and time per evaluation expected at the largest whole-image scale, with the conv
    throughput of this device measured now (about a second)."""
    last = len(module.schedule) - 1
    factor = module.schedule[last][0]
    style_hw = tuple(max(1, round(n * factor)) for n in module.scene.styles[0].shape[-2:])
    device = trainer.accelerator(cfg.trainer.accelerator)
    log.info(estimate.for_config(cfg, module.hw(last), style_hw, estimate.conv_throughput(device, repeats=1)).describe())


def run(cfg: DictConfig, output_dir: Path) -> float:
    """The stylize task: writes final.png, metrics.json and TensorBoard events into ``output_dir``."""
    resolve_auto_size(cfg)
    check(cfg)
    pl.seed_everything(cfg.seed, verbose=False)
    # Gradients through deep layers can reach denormal floats, which are ~100x slower on x86 CPUs.
    torch.set_flush_denormal(True)
    # The frozen VGG is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")
    plan = schedule(cfg.task)
    tiled = is_tiled(cfg.task)
    # A tiled run optimizes its coarser scales whole, then the output size in tiles.
    module, reference = build(cfg, plan[:-1] if tiled and len(plan) > 1 else plan)
    log_estimate(cfg, module)

    def make(**kwargs: Any) -> pl.Trainer:
        return trainer.make_trainer(cfg, output_dir, log_every_n_steps=1, enable_model_summary=False, **kwargs)

    callbacks: list[pl.Callback] = [ImageLogger(cfg.task.image_every, cfg.task.image_log_size)]
    if cfg.task.checkpoint_every:
        checkpoints = output_dir / "checkpoints"
        callbacks += [
            # No "=" in the name: Hydra's override grammar would trip on ckpt_path=.../step=4.ckpt.
            ModelCheckpoint(checkpoints, filename="step{step:06d}", auto_insert_metric_name=False,
                            every_n_train_steps=cfg.task.checkpoint_every, save_top_k=1),
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
            start = images.resize(module.rendered().detach()[0], full) if len(plan) > 1 else module.scene.init
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
        config.flat(cfg, ["task", "model", "layers", "loss", "optimizer"]) | {"precision": str(cfg.precision), "seed": cfg.seed},
        {f"final/{k}": v for k, v in metrics.items() if k.startswith(("loss_", "quality_"))},
    )
    logger.finalize("success")
    log.info(
        "final image: %s (loss %.4g after %d steps, %d evaluations; SSIM to content %.3f, style distance %.4g)",
        final, metrics["loss_total"], metrics["steps"], module.evaluations, metrics["quality_ssim"], metrics["quality_gram_mean"],
    )
    return metrics["loss_total"]


def final_metrics(module: StyleTransfer, reference: backbone.VGGFeatures, result: Tensor, steps: int) -> dict[str, float]:
    """The last losses, and quality metrics on a fixed scale: SSIM of the output's luminance to
    the content's, and the Gram distance to the (blend of) styles on ``quality.REFERENCE_LAYERS``."""
    s = module.scene
    content = s.original if s.original is not None else s.content
    metrics = {k.replace("/", "_"): float(v) for k, v in module.last_losses.items()}
    metrics["quality_ssim"] = float(quality.ssim(result, images.resize(content, tuple(result.shape[-2:]))))
    seen = color.luminance_image(result) if s.original is not None else result
    distances = [quality.gram_distances(reference, seen, style) for style in s.styles]
    for layer in quality.REFERENCE_LAYERS:
        metrics[f"quality_gram_{layer}"] = sum(w * d[layer] for w, d in zip(s.style_weights, distances))
    metrics["quality_gram_mean"] = sum(metrics[f"quality_gram_{l}"] for l in quality.REFERENCE_LAYERS) / len(quality.REFERENCE_LAYERS)
    metrics["evaluations"] = module.evaluations
    metrics["steps"] = steps
    return metrics
