"""Gatys et al. neural style transfer as a LightningModule whose only parameter is the image."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader

from transferlab import backbone, config, fetch, images, trainer
from transferlab.files import write_json
from transferlab.errors import ConfigError
from transferlab.losses import content_loss, gram_matrix, style_loss, total_variation

log = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
LINE_SEARCH_EVALS = 25  # torch's own bound on a strong-Wolfe line search


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float


class StyleTransfer(pl.LightningModule):
    """Optimizes ``image`` so that its features match the content image's and its Gram
    matrices match the style image's. Targets are computed once, when fitting starts."""

    def __init__(
        self,
        encoder: backbone.VGGFeatures,
        content: Tensor,
        style: Tensor,
        content_layers: dict[str, float],
        style_layers: dict[str, float],
        weights: LossWeights,
        optimizer: dict[str, Any],
        init: Tensor,
    ) -> None:
        super().__init__()
        # L-BFGS evaluates the loss several times per step; manual optimization lets us
        # count those evaluations and log each step exactly once.
        self.automatic_optimization = False
        self.encoder = encoder
        self.content_layers = content_layers
        self.style_layers = style_layers
        self.weights = weights
        self.optimizer_cfg = optimizer
        self.register_buffer("content", content.unsqueeze(0), persistent=False)
        self.register_buffer("style", style.unsqueeze(0), persistent=False)
        self.image = nn.Parameter(init.unsqueeze(0).clone())
        self.evaluations = 0
        self.last_losses: dict[str, Tensor] = {}
        self.last_point: Tensor | None = None
        self.last_grad: Tensor | None = None

    def on_fit_start(self) -> None:
        with torch.no_grad():
            content = self.encoder(self.content)
            style = self.encoder(self.style)
        self.content_targets = {layer: content[layer] for layer in self.content_layers}
        self.gram_targets = {layer: gram_matrix(style[layer]) for layer in self.style_layers}

    def losses(self) -> dict[str, Tensor]:
        """Every loss term of the current image, weighted, keyed by its metric name."""
        features = self.encoder(self.image)
        content = sum(w * content_loss(features[l], self.content_targets[l]) for l, w in self.content_layers.items())
        per_layer = {l: w * style_loss(features[l], self.gram_targets[l]) for l, w in self.style_layers.items()}
        terms = {
            "loss/content": self.weights.content * content,
            "loss/style": self.weights.style * sum(per_layer.values()),
            "loss/tv": self.weights.tv * total_variation(self.image),
        }
        terms["loss/total"] = sum(terms.values())
        terms.update({f"style/loss_{l}": self.weights.style * v for l, v in per_layer.items()})
        return terms

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
        return DataLoader(range(self.trainer.max_steps), batch_size=None)


class ImageLogger(pl.Callback):
    """Logs a downscaled preview of the image to TensorBoard every ``every`` steps."""

    def __init__(self, every: int, size: int) -> None:
        self.every, self.size = every, size

    def on_train_batch_end(self, trainer: pl.Trainer, module: StyleTransfer, *args: Any) -> None:
        if self.every and trainer.global_step % self.every == 0 and isinstance(trainer.logger, TensorBoardLogger):
            preview = images.fits_in(module.image.detach()[0].float().cpu(), self.size)
            trainer.logger.experiment.add_image("image", preview, trainer.global_step)


def check(cfg: DictConfig) -> None:
    """Fail before any work on a config value that cannot work."""
    task = cfg.task
    config.at_least(task.size, 32, "task.size")
    config.at_least(task.steps, 1, "task.steps")
    config.at_least(task.image_every, 0, "task.image_every")
    config.non_negative(task.style_scale, "task.style_scale")
    config.choice(task.init, INITS, "task.init")
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


def build(cfg: DictConfig) -> StyleTransfer:
    """The StyleTransfer module for ``cfg``: images loaded, VGG built, initial image chosen."""
    task = cfg.task
    content = images.load_image(fetch.resolve(task.content, "task.content"), task.size)
    style_size = max(32, round(task.size * task.style_scale))
    style = images.load_image(fetch.resolve(task.style, "task.style"), style_size)
    content_layers = config.layer_weights(cfg.layers.content, "layers.content")
    style_layers = config.layer_weights(cfg.layers.style, "layers.style")
    features, normalization = backbone.build_features(
        cfg.model.arch, cfg.model.weights, cfg.model.pooling, cfg.model.normalization
    )
    encoder = backbone.VGGFeatures(features, cfg.model.arch, [*content_layers, *style_layers], normalization)
    init = content if task.init == "content" else torch.rand_like(content)
    return StyleTransfer(
        encoder,
        content,
        style,
        content_layers,
        style_layers,
        LossWeights(cfg.loss.content_weight, cfg.loss.style_weight, cfg.loss.tv_weight),
        dict(cfg.optimizer),
        init,
    )


def run(cfg: DictConfig, output_dir: Path) -> float:
    """The stylize task: writes final.png, metrics.json and TensorBoard events into ``output_dir``."""
    check(cfg)
    pl.seed_everything(cfg.seed, verbose=False)
    # Gradients through deep layers can reach denormal floats, which are ~100x slower on x86 CPUs.
    torch.set_flush_denormal(True)
    # The frozen VGG is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")
    module = build(cfg)
    fit = trainer.make_trainer(
        cfg,
        output_dir,
        max_steps=cfg.task.steps,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[ImageLogger(cfg.task.image_every, cfg.task.image_log_size)],
    )
    final = output_dir / "final.png"
    try:
        fit.fit(module)
    finally:
        # Also on Ctrl-C (Lightning then exits): the latest image is kept.
        images.save_image(module.image.detach()[0], final)
    metrics = {k.replace("/", "_"): float(v) for k, v in module.last_losses.items()}
    metrics["evaluations"] = module.evaluations
    metrics["steps"] = fit.global_step
    write_json(metrics, output_dir / "metrics.json")
    logger = fit.logger
    logger.experiment.add_image("final", images.fits_in(module.image.detach()[0].float().cpu(), cfg.task.image_log_size))
    logger.log_hyperparams(
        config.flat(cfg, ["task", "model", "layers", "loss", "optimizer"]) | {"precision": str(cfg.precision), "seed": cfg.seed},
        {f"final/{k}": v for k, v in metrics.items() if k.startswith("loss_")},
    )
    logger.finalize("success")
    log.info("final image: %s (loss %.4g after %d steps, %d evaluations)", final, metrics["loss_total"], metrics["steps"], module.evaluations)
    return metrics["loss_total"]
